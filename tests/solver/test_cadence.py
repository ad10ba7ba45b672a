"""Stop signals become a flag the loop obeys at the next update; a second Ctrl-C stops at once."""

from __future__ import annotations

import signal

import pytest

from baton.solver import cadence
from baton.solver.cadence import StopSignal


def test_a_second_ctrl_c_while_the_first_notice_is_written_stops_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python may run a handler inside another: the test of `baton run` sends the second Ctrl-C
    as soon as it reads the first one's notice, which once landed before the first was recorded
    (both then counted as a first, and the run stopped only at its next checkpoint)."""
    stop = StopSignal()

    def write_and_get_interrupted(fd: int, data: bytes) -> int:
        stop._handle(signal.SIGINT, None)  # the second Ctrl-C, mid-write
        return len(data)

    monkeypatch.setattr(cadence.os, "write", write_and_get_interrupted)
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)


def test_ctrl_c_overrides_an_earlier_signal_and_others_do_not_override_it() -> None:
    stop = StopSignal()
    stop._handle(signal.SIGTERM, None)
    stop._handle(signal.SIGUSR1, None)
    assert stop.received == signal.SIGTERM  # the first signal is the one reported
    stop._handle(signal.SIGINT, None)
    assert stop.received == signal.SIGINT
    stop._handle(signal.SIGTERM, None)
    assert stop.received == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)
