"""`//reference/...` values resolve against the cluster's reference dir, or fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.config import compose
from baton.errors import ConfigError


def test_reference_paths_resolve_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "ref").mkdir()
    monkeypatch.setenv("BATON_REFERENCE_DIR", str(tmp_path / "ref"))
    cfg = compose(["solver=example", "label=//reference/sets/a", "+paths=[//reference/b,plain]"])
    assert cfg.label == str(tmp_path / "ref" / "sets" / "a")
    assert list(cfg.paths) == [str(tmp_path / "ref" / "b"), "plain"]


def test_signature_keeps_the_portable_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    monkeypatch.setenv("BATON_REFERENCE_DIR", str(tmp_path / "one"))
    first = compose(["solver=example", "label=//reference/x"])
    monkeypatch.setenv("BATON_REFERENCE_DIR", str(tmp_path / "two"))
    assert compose(["solver=example", "label=//reference/x"]).xp.sig == first.xp.sig


def test_no_reference_dir_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"config key 'label' is '//reference/x' but no reference dir is set"):
        compose(["solver=example", "label=//reference/x"])


def test_missing_reference_dir_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BATON_REFERENCE_DIR", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"reference dir .*absent \(from BATON_REFERENCE_DIR\) does not exist"):
        compose(["solver=example", "label=//reference/x"])


@pytest.mark.parametrize("value", ["//reference/../../etc/passwd", "//reference/sets/../../x", "//reference//etc/passwd"])
def test_a_reference_leading_outside_the_reference_dir_is_refused(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "ref").mkdir()
    monkeypatch.setenv("BATON_REFERENCE_DIR", str(tmp_path / "ref"))
    with pytest.raises(ConfigError) as error:
        compose(["solver=example", f"label={value}"])
    message = str(error.value)
    assert message.startswith(f"config key 'label' is '{value}', which leads outside the reference dir {tmp_path / 'ref'}")
    assert "\n" not in message and "without '..'" in message


def test_dot_dot_that_stays_inside_is_normalised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "ref").mkdir()
    monkeypatch.setenv("BATON_REFERENCE_DIR", str(tmp_path / "ref"))
    cfg = compose(["solver=example", "label=//reference/sets/../b/./c", "+root=//reference/"])
    assert cfg.label == str(tmp_path / "ref" / "b" / "c")
    assert cfg.root == str(tmp_path / "ref")
