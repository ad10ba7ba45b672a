"""File names built from data (labels, ids) are one name in one folder, never a path."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.data import safe_filename


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("speech/male", "speech_male"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..", "_"),
        (".hidden", "hidden"),
        ("", "_"),
        ("a\\b c:d*?\n", "a_b_c_d___"),
        ("Dvořák", "Dvo__k"),
        ("note_bright-2.5", "note_bright-2.5"),  # what is already safe is kept
        (42, "42"),
    ],
)
def test_anything_outside_the_safe_set_becomes_an_underscore(text: object, name: str) -> None:
    assert safe_filename(text) == name


def test_long_values_are_cut_and_stay_distinct() -> None:
    first, second = safe_filename("x" * 300 + "a"), safe_filename("x" * 300 + "b")
    assert len(first) == len(second) == 80 and first != second
    assert len(safe_filename("y" * 50, max_length=20)) == 20


def test_every_name_lands_inside_its_folder(tmp_path: Path) -> None:
    for label in ["a/b", "../up", "/abs", "./.", "x" * 1000, "nul\0byte"]:
        path = tmp_path / f"00_{safe_filename(label)}.wav"
        path.write_bytes(b"")
        assert path.parent == tmp_path and path.resolve().parent == tmp_path.resolve()
