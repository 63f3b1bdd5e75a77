"""Nothing lost, nothing silently wrong: the data-losing mistakes are refused in one line, before anything is
written, and the user's folders (the dataset, an unfinished run, a folder of their own) are left as they were.

Every case here stops before training, so each test takes a fraction of a second.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import tree_digest
from reffakd.cli import main
from reffakd.data import DATASETS
from reffakd.data import fashion_mnist as fm
from reffakd.data.cache import default_cache_dir
from reffakd.data.image_folder import load_imagefolder
from reffakd.errors import ReffAKDError
from reffakd.rundir import LOCK, MARKER, locked, partial_path, staged_run_dir

FAST = ["--val-size", "100", "--no-progress", "--no-download", "--device", "cpu", "--epochs", "1"]


def train_argv(out: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "--out", str(out), "--data-dir", str(data), "--method", "ce", *FAST, *extra]


def one_error_line(capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reffakd: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def image_folder(root: Path, per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


# --------------------------------------------------------------------------- 1. the ImageFolder walk


def test_a_symlink_loop_in_an_imagefolder_is_refused_naming_the_link(tmp_path: Path) -> None:
    d = image_folder(tmp_path / "d")
    (d / "a" / "loop").symlink_to("..")
    with pytest.raises(ReffAKDError, match=r"a/loop is a symbolic link to the folder") as info:
        load_imagefolder(d)
    assert "\n" not in str(info.value)
    (d / "a" / "loop").unlink()
    (d / "b" / "out").symlink_to(tmp_path)  # a linked folder out of the tree: refused too
    with pytest.raises(ReffAKDError, match=r"b/out is a symbolic link"):
        load_imagefolder(d)


def test_a_linked_image_file_is_read_and_a_broken_one_refused(tmp_path: Path) -> None:
    d = image_folder(tmp_path / "d")
    (d / "a" / "extra.png").symlink_to(d / "b" / "0.png")
    ds = load_imagefolder(d, test_fraction=0.5)
    assert len(ds.train_labels) + len(ds.test_labels) == 7
    (d / "a" / "broken.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(ReffAKDError, match=r"broken\.png is not an image file"):
        load_imagefolder(d)


def test_an_unreadable_folder_inside_a_class_is_named_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = image_folder(tmp_path / "d")
    locked_dir = d / "a" / "private"
    locked_dir.mkdir()
    real = os.scandir

    def scandir(path):  # chmod 000 does not stop root, who runs the tests here
        if Path(path) == locked_dir:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ReffAKDError, match=r"cannot read folder .*a/private \(Permission denied\)"):
        load_imagefolder(d)


# --------------------------------------------------------------------------- 2. one run per folder at a time


def test_a_second_run_on_the_same_out_is_refused_naming_the_holder(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with staged_run_dir(out) as staging:  # the first run, still going
        (staging / "work").write_text("first run's file")
        before = tree_digest(tmp_path)
        assert main(train_argv(out, fake_fmnist)) == 1
        one_error_line(capsys, f"is in use by another reffakd run (pid {os.getpid()}", "choose another --out")
        assert tree_digest(tmp_path) == before
    assert (out / "work").read_text() == "first run's file"  # the first run finished whole
    assert not (out / LOCK).exists() and not (out / MARKER).exists()


def test_the_lock_goes_when_the_run_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_run_dir(out):
        raise RuntimeError("the run failed")
    with staged_run_dir(out, resume=True):  # free again: the next run may take it
        pass
    assert out.is_dir()


def test_a_second_comparison_on_the_same_folder_is_refused(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    out.mkdir()
    with locked(out / LOCK, "comparison folder"):
        argv = ["compare", "--out", str(out), "--data-dir", str(fake_fmnist), "--methods", "ce", *FAST]
        assert main(argv) == 1
        one_error_line(capsys, f"comparison folder {out} is in use by another reffakd run (pid {os.getpid()}")
    assert [p.name for p in out.iterdir()] == [LOCK]


# --------------------------------------------------------------------------- 3. an existing OUT.partial


def test_an_unfinished_run_is_kept_and_the_error_says_how_to_go_on(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_run_dir(out) as staging:
        (staging / "resume.safetensors").write_text("a checkpoint")
        raise RuntimeError("killed")
    assert (partial_path(out) / MARKER).is_file()
    before = tree_digest(tmp_path)
    for command in ("train", "run", "softlabels"):
        argv = train_argv(out, fake_fmnist) if command == "train" else [command, "--out", str(out), *FAST[:-2]]
        assert main([*argv, "--data-dir", str(fake_fmnist)]) == 1
        line = one_error_line(
            capsys, f"{out}.partial holds an unfinished run; add --resume to continue it, or remove {out}.partial"
        )
        assert line.endswith(f"; continue with: reffakd {shlex.join([*argv, '--data-dir', str(fake_fmnist)])} --resume")
    assert tree_digest(tmp_path) == before


def test_a_users_own_partial_folder_is_never_deleted(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "X"
    mine = tmp_path / "X.partial"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    before = tree_digest(tmp_path)
    assert main(train_argv(out, fake_fmnist)) == 1
    one_error_line(capsys, f"{mine} exists and was not made by", "never deleted")
    assert tree_digest(tmp_path) == before and sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    with pytest.raises(ReffAKDError, match="never deleted"), staged_run_dir(out, redo=True):
        pass  # not even by a comparison's redo of its own runs
    assert tree_digest(tmp_path) == before


# --------------------------------------------------------------------------- 4. never into the data


@pytest.mark.parametrize("where", ["data_dir", "test_dir", "cache"])
def test_out_inside_the_data_is_refused_before_anything_is_written(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = image_folder(tmp_path / "d")
    t = image_folder(tmp_path / "t")
    inside = {"data_dir": d / "a", "test_dir": t, "cache": default_cache_dir()}[where]
    out = inside / "run"
    argv = ["run", "--dataset", "imagefolder", "--data-dir", str(d), "--test-dir", str(t), "--out", str(out), *FAST]
    before, cache = tree_digest(tmp_path), tree_digest(default_cache_dir())
    assert main(argv) == 1
    flag = {"data_dir": "--data-dir", "test_dir": "--test-dir", "cache": "the cache folder"}[where]
    one_error_line(capsys, f"--out {out} is inside {flag} ", "reffakd never writes into the data")
    assert tree_digest(tmp_path) == before and tree_digest(default_cache_dir()) == cache
    assert not out.exists() and not partial_path(out).exists()


def test_a_comparison_inside_the_data_is_refused(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree_digest(fake_fmnist)
    link = tmp_path / "link"
    link.symlink_to(fake_fmnist)  # real paths are compared
    argv = ["compare", "--out", str(link / "cmp"), "--data-dir", str(fake_fmnist), "--methods", "ce", *FAST]
    assert main(argv) == 1
    one_error_line(capsys, "is inside --data-dir")
    assert tree_digest(fake_fmnist) == before and not (fake_fmnist / "cmp").exists()


# ------------------------------------------------------------- 5. an explicit data folder: used or refused


def test_a_missing_data_dir_is_an_error_not_another_dataset(
    tmp_path: Path, fake_fmnist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(fm, "DEBIAN_DIR", fake_fmnist)  # what `run` used to train on instead, without a word
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), "--data-dir", "/no/such/dir", *FAST]) == 1
    one_error_line(capsys, "--data-dir /no/such/dir is not a folder: it does not exist")
    assert not out.exists() and not partial_path(out).exists()


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_every_loader_refuses_a_missing_or_file_data_dir(dataset: str, tmp_path: Path) -> None:
    for given, says in ((tmp_path / "missing", "it does not exist"), (tmp_path / "file.txt", "it is a file")):
        (tmp_path / "file.txt").write_text("not data")
        if dataset.startswith("cifar") and says == "it is a file":
            continue  # a file may be CIFAR's .tar.gz archive: the archive reader says what is wrong with it
        with pytest.raises(ReffAKDError, match=f"data_dir {given} is not a folder: {says}"):
            DATASETS[dataset](data_dir=given, download=False)


def test_a_missing_test_dir_is_an_error(tmp_path: Path) -> None:
    d = image_folder(tmp_path / "d")
    with pytest.raises(ReffAKDError, match="test_dir .*/nope is not a folder: it does not exist"):
        load_imagefolder(d, test_dir=tmp_path / "nope")
