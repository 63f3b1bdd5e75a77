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


@pytest.mark.parametrize("hard_links", [True, False])
def test_write_new_never_replaces_a_file_there_at_the_moment_of_writing(
    hard_links: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With hard links the new file is linked into place (fails if taken); without, the name is reserved O_EXCL."""
    import errno
    import os

    from reffakd.io import write_new, write_text_new

    if not hard_links:

        def no_links(src: object, dst: object) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.csv"
    write_text_new(target, "a,b\n", "csv")
    assert target.read_text() == "a,b\n" and oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())

    def taken(tmp: Path) -> None:  # another process creates the file while ours is being written
        tmp.write_text("ours")
        target.write_text("theirs")

    target.unlink()
    with pytest.raises(ReffAKDError, match="csv .* already exists"):
        write_new(target, taken, "csv")
    assert target.read_text() == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask
