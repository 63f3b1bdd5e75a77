"""The JSON reader every artifact goes through: one line naming the file, the reason and what writes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from reffakd.errors import ReffAKDError
from reffakd.io import read_json, write_json


def test_read_json_round_trip(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"x": [1, 2]})
    assert read_json(tmp_path / "a.json", "test file", "this test") == {"x": [1, 2]}


@pytest.mark.parametrize(
    ("content", "reason"), [(None, "No such file"), ("{broken", "Expecting"), (b"\xff\xfe", "utf-8")]
)
def test_read_json_names_the_file_and_its_writer(tmp_path: Path, content: str | bytes | None, reason: str) -> None:
    path = tmp_path / "x.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ReffAKDError) as info:
        read_json(path, "test file", "`reffakd test`")
    message = str(info.value)
    assert message.startswith(f"test file {path} is missing or malformed (")
    assert reason in message and message.endswith("; it is written by `reffakd test`")
    assert "\n" not in message
