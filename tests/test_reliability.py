"""Nothing silently wrong (issue 13, items 7-16): resume identity, OS conditions, bounded inputs, checks made before
any folder exists, the right advice, non-finite training, the split with the checkpoint, absurd numbers, and the
small ones (argparse, SIGTERM, --help, umask, the flag named). Items 1-6 are in ``test_safety.py``.

Most cases stop before training; the few that train use the tiny fake Fashion-MNIST, LeNet and one or two epochs.
"""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from reffakd.cli import main
from reffakd.engine import trainer
from reffakd.rundir import partial_path

FAST = ["--val-size", "100", "--no-progress", "--no-download", "--device", "cpu"]


def one_error_line(capsys: pytest.CaptureFixture[str], *fragments: str, prefix: str = "reffakd: error: ") -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def stop_after_epoch(monkeypatch: pytest.MonkeyPatch, signum: int = signal.SIGINT, epoch: int = 1) -> None:
    """As if the signal arrived during ``epoch``: the loop saves its checkpoint and stops at the epoch's end."""
    original = trainer._Fit._check_stop_at_epoch_end

    def check(self: trainer._Fit, done: int) -> None:
        if done == epoch:
            self.stop.signum = signum
        original(self, done)

    monkeypatch.setattr(trainer._Fit, "_check_stop_at_epoch_end", check)


# --------------------------------------------------------------------------- 11. the advice is the right command


def test_an_interrupted_comparison_says_run_it_again_and_that_resumes(
    tmp_path: Path, fake_fmnist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    argv = [
        "compare",
        "--out",
        str(out),
        "--data-dir",
        str(fake_fmnist),
        "--methods",
        "ce",
        "--seeds",
        "0",
        "--epochs",
        "2",
        *FAST,
    ]
    with monkeypatch.context() as m:
        stop_after_epoch(m)
        assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(f"; continue with the same command: reffakd {shlex.join(argv)}"), err
    assert main(argv) == 0  # exactly that command: it continues the run from its checkpoint
    assert "resuming from" in capsys.readouterr().out
    assert (out / "runs" / "ce" / "seed0" / "summary.json").is_file()


# --------------------------------------------------------------------------- 16. small ones


def test_argparse_mistakes_are_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "o"), "--epochs", "x"]) == 1
    one_error_line(capsys, "argument --epochs: invalid int value: 'x'")
    assert main(["no-such-command"]) == 1
    one_error_line(capsys, "invalid choice: 'no-such-command'")
    assert list(tmp_path.iterdir()) == []


def test_config_show_help_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["config", "show", "--help"])
    assert info.value.code == 0 and "COMMAND [OPTIONS]" in capsys.readouterr().out


def test_sigterm_outside_training_says_what_happened(
    tmp_path: Path, fake_fmnist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the last epoch (the test evaluation, the summary) a SIGTERM is not a silent exit 143."""
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--data-dir", str(fake_fmnist), "--epochs", "1", *FAST]

    def test_then_term(self: trainer._Fit) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    with monkeypatch.context() as m:
        m.setattr(trainer._Fit, "_test", test_then_term)
        assert main(argv) == 143
    one_error_line(
        capsys, f"continue with: reffakd {shlex.join(argv)} --resume", prefix="reffakd: terminated by SIGTERM"
    )
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # main put the handler back
    assert main([*argv, "--resume"]) == 0 and (out / "summary.json").is_file()


def test_artifacts_respect_the_umask(tmp_path: Path) -> None:
    from reffakd.io import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o077)
        write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)], ids=["022", "002", "077"])
def test_every_written_file_and_cache_folder_gets_the_umasks_mode(umask: int, mode: int, tmp_path: Path) -> None:
    """Whatever the writer does with the temporary file: safetensors writes a file of its own (mode 0600) and
    renames it over ours, so checkpoints and soft labels were 0600 whatever the umask; a CIFAR archive's cache
    folder came from mkdtemp (0700)."""
    import tarfile

    import torch
    from safetensors.torch import save_file

    from reffakd.data.cifar import load_cifar10
    from reffakd.io import write_with
    from reffakd.models import create_model, save_checkpoint
    from test_datasets import make_fake_cifar

    make_fake_cifar(tmp_path / "src")
    archive = tmp_path / "arch" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    old = os.umask(umask)
    try:
        model = create_model("lenet5", num_classes=10, in_channels=1, image_size=(32, 32))
        meta = {"model": "lenet5", "num_classes": 10, "in_channels": 1, "image_size": [32, 32]}
        written = [save_checkpoint(tmp_path / "out" / "c.safetensors", model, meta)]
        write_with(tmp_path / "out" / "t.safetensors", lambda tmp: save_file({"x": torch.zeros(1)}, str(tmp)))
        written.append(tmp_path / "out" / "t.safetensors")
        cache = Path(os.environ["REFFAKD_CACHE"])
        load_cifar10(data_dir=archive.parent, download=False)
    finally:
        os.umask(old)
    folders = [p for p in cache.rglob("cifar-10-batches-py") if p.is_dir()]
    assert folders and all(stat.S_IMODE(p.parent.stat().st_mode) == 0o777 & ~umask for p in folders)
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


@pytest.mark.parametrize(
    "argv,says",
    [
        (["run", "--ae-lr", "-1"], "learning rate --ae-lr -1.0 is out of range"),
        (["run", "--ae-milestones", "9"], "--ae-milestones [9] must be epochs between 1 and 5"),
        (["compare", "--vary", "lr=abc"], "error: --vary: grid lr must be a non-empty list"),
    ],
)
def test_errors_name_the_flag_that_was_typed(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--out", str(tmp_path / "o"), "--no-download"]) == 1
    one_error_line(capsys, says)
    assert list(tmp_path.iterdir()) == []
    assert not partial_path(tmp_path / "o").exists()


# --------------------------------------------------------------------------- 8. OS conditions


def test_an_unwritable_cache_is_optional(tmp_path: Path, fake_fmnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache folder that cannot be written (here: below a file, which stops root too) costs time, not the run."""
    from reffakd.data.fashion_mnist import load_fashion_mnist

    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("REFFAKD_CACHE", str(tmp_path / "file" / "cache"))
    ds = load_fashion_mnist(data_dir=fake_fmnist, download=False)
    assert len(ds.train_labels) == 400 and "--data-dir" in ds.source


@pytest.mark.parametrize("case", ["parent is a file", "dangling link", "long name", "read-only"])
def test_an_output_path_that_cannot_work_is_refused_before_loading(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("a file")
    out = {
        "parent is a file": tmp_path / "file" / "run",
        "dangling link": tmp_path / "link",
        "long name": tmp_path / ("r" * 250),  # fits, but not with ".partial" appended
        "read-only": tmp_path / "ro" / "run",
    }[case]
    if case == "dangling link":
        out.symlink_to(tmp_path / "nowhere")
    if case == "read-only":  # chmod does not stop root, who runs the tests here: the check asks os.access
        (tmp_path / "ro").mkdir()
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path / "ro" else real(p, mode))
    says = {
        "parent is a file": f"{tmp_path / 'file'} is a file, not a folder",
        "dangling link": "is a symbolic link (to",
        "long name": "bytes (with '.partial' for the run in progress), over this file system's",
        "read-only": f"folder {tmp_path / 'ro'} is not writable",
    }[case]
    for command in ("train",) if case == "long name" else ("train", "compare"):  # a comparison has no OUT.partial
        before = sorted(p.name for p in tmp_path.iterdir())
        assert main([command, "--out", str(out), "--data-dir", "/no/such/data", *FAST]) == 1  # before the data
        one_error_line(capsys, f"--out {out}", says)
        assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_full_disk_is_one_line_and_the_run_resumes(
    tmp_path: Path, fake_fmnist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from reffakd import pipeline

    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--data-dir", str(fake_fmnist), "--epochs", "1", *FAST]

    def full(path: Path, obj: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as m:
        m.setattr(pipeline, "write_json", full)
        assert main(argv) == 1
    line = one_error_line(capsys, "No space left on device: ", "summary.json; free some space; then continue with: ")
    assert line.endswith(f"reffakd {shlex.join(argv)} --resume")
    assert main([*argv, "--resume"]) == 0 and (out / "summary.json").is_file()


def test_a_full_disk_during_softlabels_advises_a_command_that_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`softlabels` on a full disk: one line, exit 1, and advice that works. Before the autoencoder's first resume
    checkpoint nothing is kept (it left OUT.partial, and advised --resume with nothing to resume) and the advice is
    the same command; after it, OUT.partial keeps the checkpoint and the advice is --resume, which finishes the run."""
    import errno

    from conftest import make_fake_fashion_mnist
    from reffakd.engine import resume
    from reffakd.softlabels import builder

    data = make_fake_fashion_mnist(tmp_path / "data", n_train=120, n_test=20)
    out = tmp_path / "soft"
    argv = ["softlabels", "--out", str(out), "--data-dir", str(data), "--ae-epochs", "1", "--ae-batch-size", "32",
            "--no-plots", "--val-size", "20", "--no-progress", "--no-download", "--device", "cpu"]  # fmt: skip

    def full(path: Path, *args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as m:
        m.setattr(resume, "write_with", full)  # the first resume checkpoint
        assert main(argv) == 1
    line = one_error_line(capsys, "No space left on device: ", "resume.safetensors; free some space; then run the same")
    assert "--resume" not in line and not out.exists() and not partial_path(out).exists()
    advised = shlex.split(line.split("run the same command again: reffakd ", 1)[1])
    with monkeypatch.context() as m:
        m.setattr(builder, "write_json", full)  # soft_labels_cost.json, after the autoencoder's checkpoint
        assert main(advised) == 1
    line = one_error_line(capsys, "No space left on device: ", "soft_labels_cost.json; free some space; then continue")
    assert line.endswith(" --resume") and (partial_path(out) / "resume.safetensors").is_file() and not out.exists()
    assert main(shlex.split(line.split("continue with: reffakd ", 1)[1])) == 0
    assert (out / "soft_labels_cost.json").is_file() and not partial_path(out).exists()


def test_a_folder_that_appears_at_the_end_is_never_replaced(tmp_path: Path) -> None:
    from reffakd.errors import ReffAKDError
    from reffakd.rundir import staged_run_dir

    out = tmp_path / "run"
    with pytest.raises(ReffAKDError, match="appeared while this run worked"), staged_run_dir(out) as staging:
        (staging / "result").write_text("done")
        out.mkdir()  # another process made it meanwhile (os.replace would have replaced an empty folder)
    assert list(out.iterdir()) == [] and (partial_path(out) / "result").read_text() == "done"


# --------------------------------------------------------------------------- 12. divergence is a failure


def test_a_diverging_run_stops_in_one_line_and_nothing_says_success(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    # Batches of 8: the running loss is read every 20 steps (not every step: that would wait for a GPU each time).
    argv = ["train", "--data-dir", str(fake_fmnist), "--epochs", "2", "--lr", "1e30", *FAST]
    assert main([*argv, "--out", str(out), "--batch-size", "8"]) == 1
    one_error_line(capsys, "training diverged: the training loss is nan at epoch 1, by batch 20;", "--lr 1e+30")
    assert not out.exists() and not (partial_path(out) / "summary.json").exists()
    out = tmp_path / "run3"
    assert main([*argv, "--out", str(out)]) == 1  # 3 batches an epoch: found by the epoch's record
    one_error_line(capsys, "training diverged: train_loss is nan at the end of epoch 1;", "--lr 1e+30")
    assert not out.exists() and not (partial_path(out) / "summary.json").exists()


def test_json_outputs_stay_strict(tmp_path: Path) -> None:
    import json

    import torch

    from reffakd.io import JsonlWriter, write_json

    write_json(tmp_path / "a.json", {"loss": float("nan"), "x": [float("inf"), 1.5], "t": torch.tensor([float("nan")])})
    JsonlWriter(tmp_path / "m.jsonl").write({"val_loss": float("-inf")})
    strict = lambda text: json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))  # noqa: E731
    assert strict((tmp_path / "a.json").read_text()) == {"loss": None, "x": [None, 1.5], "t": [None]}
    assert strict((tmp_path / "m.jsonl").read_text()) == {"val_loss": None}


# --------------------------------------------------------------------------- 10. checked before any folder exists


@pytest.mark.parametrize(
    "argv,says",
    [
        (["run", "--target-own-prob", "0.05"], "--target-own-prob 0.05 is out of range for 10 classes"),
        (["softlabels", "--samples-per-class", "1000"], "--samples-per-class 1000 is more than class"),
        (["train", "--amp", "fp16"], "--amp fp16 needs a CUDA device"),
        (["train", "--tensorboard"], "--tensorboard needs the TensorBoard package"),
        (["compare", "--methods", "kd", "--teacher", "/no/such/teacher.safetensors"], "/no/such/teacher.safetensors"),
    ],
)
def test_mistakes_are_caught_before_a_folder_exists(
    argv: list[str],
    says: str,
    tmp_path: Path,
    fake_fmnist: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), "--data-dir", str(fake_fmnist), *FAST]) == 1
    one_error_line(capsys, says)
    assert list(tmp_path.iterdir()) == []  # no OUT.partial, no spec.json that would refuse the corrected command


# --------------------------------------------------------------------------- 14. absurd numbers, edited files


@pytest.mark.parametrize(
    "extra,says",
    [
        (["--image-size", "100000"], "--image-size 100000 is out of range: it must be between 1 and 1024"),
        (["--seed", str(2**63)], f"--seed {2**63} is out of range: it must be an integer from 0 to 2^63 - 1"),
        (["--split-seed", str(2**64)], "--split-seed 18446744073709551616 is out of range"),
        (["--method", "tfkd-reg", "-T", "1e300"], "1e+300 is out of range: it must lie in (0, 100]"),
    ],
)
def test_absurd_numbers_are_one_line(
    extra: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["train", "--out", str(tmp_path / "o"), *extra, *FAST]) == 1
    one_error_line(capsys, says)
    assert list(tmp_path.iterdir()) == []


def test_edited_checkpoint_and_cost_files_are_one_line(tmp_path: Path) -> None:
    import json

    from reffakd.errors import ReffAKDError
    from reffakd.models import create_model, load_model
    from reffakd.models.checkpoint import save_checkpoint
    from reffakd.softlabels import read_soft_label_cost
    from reffakd.sources.teacher import _training_cost

    meta = {"model": "lenet5", "num_classes": 2, "in_channels": 1, "image_size": [32, 32], "class_names": ["a", "b"]}
    model = create_model("lenet5", num_classes=2, in_channels=1, image_size=(32, 32))
    path = save_checkpoint(tmp_path / "m.safetensors", model, {**meta, "mean": [0.5], "std": [0.2]})
    side = tmp_path / "m.json"
    side.write_text(json.dumps({**json.loads(side.read_text()), "image_size": [60000, 60000]}))
    with pytest.raises(ReffAKDError, match=r"m\.json is malformed: .*image_size \[H, W\] \(each at most 1024\)"):
        load_model(path)
    with pytest.raises(ReffAKDError, match=r"teacher run summary .*summary\.json is malformed: cost must be an object"):
        _training_cost({"cost": []}, tmp_path / "summary.json")
    (tmp_path / "soft_labels_cost.json").write_text("[]")
    with pytest.raises(ReffAKDError, match=r"soft_labels_cost\.json is malformed: expected a JSON object"):
        read_soft_label_cost(tmp_path / "soft_labels.safetensors")


# --------------------------------------------------------------------------- 9. bounded input files


def test_a_yaml_alias_bomb_is_refused_under_a_memory_cap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nine nested aliases make 10^9 values: refused in one line without building them, under a 1 GiB headroom
    (the soft limit alone, so the test can lift it again; it used to fail with a MemoryError after 30 s)."""
    import resource

    items = ["&l0 [x, x, x, x, x, x, x, x, x, x]"] + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("student: {milestones: [" + ", ".join(items) + "]}\n")
    vm = int(next(line for line in open("/proc/self/status") if line.startswith("VmSize")).split()[1]) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), hard))
    try:
        code = main(["compare", "--out", str(tmp_path / "o"), "--config", str(bomb)])
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert code == 1
    one_error_line(capsys, f"config {bomb} expands to more than 100,000 values (YAML aliases")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.yaml"]


def test_a_huge_config_file_is_refused_before_it_is_parsed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("epochs: 1\n" + "# padding\n" * 200_000)
    assert main(["train", "--out", str(tmp_path / "o"), "--config", str(big)]) == 1
    one_error_line(capsys, f"config {big} is 2,000,010 bytes; a config or spec file may hold at most 1,048,576")


# --------------------------------------------------------------------- 7. resume identity, 13. the split travels


def test_resume_refuses_other_data_split_or_speed_and_evaluate_val_another_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import make_fake_fashion_mnist
    from reffakd.engine.resume import load_state, save_state

    data = make_fake_fashion_mnist(tmp_path / "data", n_train=300, n_test=50)
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--data-dir", str(data), "--epochs", "2", *FAST]
    with monkeypatch.context() as m:
        stop_after_epoch(m)
        assert main(argv) == 130
    capsys.readouterr()
    staging = partial_path(out)
    for extra, field in (
        (["--val-size", "50"], "data.val_size 100 -> 50"),
        (["--split-seed", "1"], "data.split_seed 0 -> 1"),
        (["--amp", "bf16"], "speed.amp 'none' -> 'bf16'"),
    ):
        assert main([*argv, "--resume", *extra]) == 1
        one_error_line(capsys, f"resume checkpoint {staging / 'resume.safetensors'} is from a different run", field)
    make_fake_fashion_mnist(data, n_train=300, n_test=50, seed=1)  # the same files, other pixels
    assert main([*argv, "--resume"]) == 1
    one_error_line(capsys, "data.fingerprint")
    make_fake_fashion_mnist(data, n_train=300, n_test=50, seed=0)

    state = load_state(staging)  # an epoch count its history does not hold: refused (an edit is a checksum error)
    good = (staging / "resume.safetensors").read_bytes()
    state.epoch = 99
    save_state(tmp_path / "edited", state)
    (staging / "resume.safetensors").write_bytes((tmp_path / "edited" / "resume.safetensors").read_bytes())
    assert main([*argv, "--resume"]) == 1
    one_error_line(capsys, "does not agree with itself (epoch 99, history of epochs [1])")
    (staging / "resume.safetensors").write_bytes(good)
    assert main([*argv, "--resume"]) == 0  # the same command continues
    capsys.readouterr()

    best = ["evaluate", "--checkpoint", str(out / "best.safetensors"), "--data-dir", str(data), "--split", "val"]
    best += ["--no-download", "--device", "cpu"]
    assert main([*best, "--val-size", "100"]) == 0
    capsys.readouterr()
    for extra, says in ((["--val-size", "50"], "--val-size 100, here 50"), (["--split-seed", "3", "--val-size", "100"],
                                                                          "--split-seed 0, here 3")):  # fmt: skip
        assert main([*best, *extra]) == 1
        one_error_line(capsys, "was selected on another validation split (", says, "would hold images it trained on")
    assert main([*best[:-3], "--split", "test", "--split-seed", "3", "--no-download", "--device", "cpu"]) == 0


# --------------------------------------------------------------------------- the --val-size default


def test_the_default_val_size_is_a_capped_fraction(tmp_path: Path) -> None:
    """10 % of the training set, at most 5,000: the same 5,000 as before on Fashion-MNIST and CIFAR, and a small
    ImageFolder is split instead of refused (5,000 of 5,000 images or fewer was out of range)."""
    import numpy as np
    from PIL import Image

    from reffakd.data import DataConfig, load_splits
    from reffakd.data.dataset import default_val_size

    assert [default_val_size(n) for n in (55, 4000, 50_000, 60_000, 100_000)] == [5, 400, 5000, 5000, 5000]
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(20):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    splits = load_splits(DataConfig(dataset="imagefolder", data_dir=str(tmp_path), test_fraction=0.5), lambda _: None)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 20)


# --------------------------------------------------------------------------- 15. inputs that are not what they say


def test_the_test_folder_must_not_be_the_training_folder(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from reffakd.data.image_folder import load_imagefolder
    from reffakd.errors import ReffAKDError

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "d" / cls / f"{i}.png")
    d = tmp_path / "d"
    for test_dir, how in ((d, "is"), (d / "a", "is inside"), (tmp_path, "holds")):
        with pytest.raises(ReffAKDError, match=f"test_dir {test_dir} {how} the training images of data_dir {d}"):
            load_imagefolder(d, test_dir=test_dir)


def test_mnist_and_fashion_mnist_files_are_told_apart() -> None:
    """Same file names, same shapes: the full training labels decide (6,000 per class is Fashion-MNIST)."""
    import torch

    from reffakd.data.fashion_mnist import FASHION_MNIST, MNIST_SPEC, check_which
    from reffakd.errors import ReffAKDError

    fashion = torch.arange(60_000) % 10
    digits = torch.cat([torch.zeros(5923, dtype=torch.long), torch.arange(60_000 - 5923) % 9 + 1])
    with pytest.raises(ReffAKDError, match="are Fashion-MNIST, not MNIST .*give dataset fashion-mnist"):
        check_which(MNIST_SPEC, fashion, "--data-dir X")
    with pytest.raises(ReffAKDError, match="are MNIST, not Fashion-MNIST .*give dataset mnist"):
        check_which(FASHION_MNIST, digits, "--data-dir X")
    check_which(FASHION_MNIST, fashion, "--data-dir X")
    check_which(MNIST_SPEC, digits, "--data-dir X")
    check_which(MNIST_SPEC, fashion[:400], "--data-dir X")  # a subset is not judged


def test_a_runs_every_input_is_part_of_its_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resuming with other soft labels, other method parameters, or a folder another command started is refused in
    one line (each was accepted: the run went on against other inputs, or `run` took a `softlabels` folder)."""
    from conftest import make_fake_fashion_mnist

    data = make_fake_fashion_mnist(tmp_path / "data", n_train=300, n_test=50)
    soft = {}
    for seed in (0, 1):
        soft[seed] = tmp_path / f"soft{seed}"
        argv = [
            "softlabels",
            "--out",
            str(soft[seed]),
            "--data-dir",
            str(data),
            "--ae-epochs",
            "1",
            "--seed",
            str(seed),
        ]
        assert main([*argv, *FAST]) == 0
    capsys.readouterr()
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--data-dir", str(data), "--epochs", "2", "--method", "reffakd", *FAST]
    given = ["--soft-labels", str(soft[0] / "soft_labels.safetensors")]
    with monkeypatch.context() as m:
        stop_after_epoch(m)
        assert main([*argv, *given]) == 130
    capsys.readouterr()
    other = ["--soft-labels", str(soft[1] / "soft_labels.safetensors")]
    assert main([*argv, *other, "--resume"]) == 1
    one_error_line(capsys, "is from a different run", "inputs.soft_labels")
    assert main([*argv, *given, "--alpha", "0.9", "--resume"]) == 1
    one_error_line(capsys, "is from a different run", "method_params.alpha 0.5 -> 0.9")
    assert main([*argv, *given, "--resume"]) == 0  # the same inputs continue
    capsys.readouterr()

    folder = tmp_path / "soft-cut"  # a `softlabels` folder stopped after its autoencoder's first epoch
    with monkeypatch.context() as m:
        stop_after_epoch(m)
        assert main(["softlabels", "--out", str(folder), "--data-dir", str(data), "--ae-epochs", "2", *FAST]) == 130
    capsys.readouterr()
    run = ["run", "--out", str(folder), "--data-dir", str(data), "--ae-epochs", "1", "--epochs", "1", *FAST]
    assert main([*run, "--resume"]) == 1
    one_error_line(capsys, "holds an unfinished `reffakd softlabels`, which `reffakd run` cannot continue")


def test_an_unlabelled_folder_must_hold_images_and_lie_apart_from_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`softlabels --unlabelled-dir D --data-dir D` trained the autoencoder on the validation and test images too, and
    an empty folder was found only after the run folder existed: both are one line before anything is written."""
    from PIL import Image

    from conftest import make_fake_fashion_mnist

    data = make_fake_fashion_mnist(tmp_path / "data", n_train=300, n_test=50)
    Image.new("L", (28, 28), 128).save(data / "extra.png")  # the data folder holds an image too
    (tmp_path / "empty").mkdir()
    base = ["softlabels", "--data-dir", str(data), "--ae-epochs", "1", *FAST]
    for unlabelled, fragment in (
        (data, f"--unlabelled-dir {data} overlaps --data-dir"),
        (data.parent, f"--unlabelled-dir {data.parent} overlaps --data-dir"),
        (tmp_path / "empty", "holds no images"),
    ):
        out = tmp_path / f"out-{len(fragment)}"
        assert main([*base, "--out", str(out), "--unlabelled-dir", str(unlabelled)]) == 1
        one_error_line(capsys, fragment)
        assert not out.exists() and not partial_path(out).exists()


def test_an_unlabelled_folder_holds_no_copy_of_the_data_and_no_unreadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A test, validation or training image copied into the unlabelled folder (another name, another lossless format,
    its own 28x28 size) was trained on by the autoencoder; an unreadable image there was found after the run folder
    existed; a class with one labelled training image failed after the autoencoder trained. Each is one line, naming
    the file or the class, before any folder exists. Decoded pixels are compared: the dataset's own images (IDX here,
    as MNIST's and CIFAR's) have no files whose bytes could be."""
    import numpy as np
    from PIL import Image

    from conftest import make_fake_fashion_mnist
    from reffakd.data import load_fashion_mnist

    data = make_fake_fashion_mnist(tmp_path / "data", n_train=120, n_test=20)
    raw = load_fashion_mnist(data, download=False, image_size=28)  # the images as in the files, before the resize
    rng = np.random.default_rng(1)
    base = ["softlabels", "--data-dir", str(data), "--ae-epochs", "1", "--val-size", "20", "--no-progress",
            "--no-download", "--device", "cpu"]  # fmt: skip
    for case, fragment in (
        ("test", "is test image 7 of the dataset"),
        ("train", "is training image"),
        ("corrupt", "unreadable image"),
    ):
        folder = tmp_path / f"unlabelled-{case}"
        folder.mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / f"other-{i}.png")
        if case == "test":
            Image.fromarray(raw.test_images[7, 0].numpy()).save(folder / "copy.bmp")
        elif case == "train":
            Image.fromarray(raw.train_images[0, 0].numpy()).save(folder / "copy.png")
        else:
            (folder / "copy.png").write_bytes((folder / "other-0.png").read_bytes()[:60])  # cut short
        out = tmp_path / f"out-{case}"
        assert main([*base, "--out", str(out), "--unlabelled-dir", str(folder)]) == 1
        assert f"{folder / 'copy.'}" in one_error_line(capsys, fragment)
        assert not out.exists() and not partial_path(out).exists()
    # a validation split leaving one training image: nine classes have none
    out = tmp_path / "out-small"
    assert main([*base, "--out", str(out), "--val-size", "119"]) == 1
    one_error_line(capsys, "labelled training image(s); the class similarity needs at least 2 per class")
    assert not out.exists() and not partial_path(out).exists()


def test_an_ascii_locale_a_closed_stderr_and_a_closed_pipe_are_no_traceback(tmp_path: Path) -> None:
    """Three `softlabels` runs in subprocesses, at once. An ASCII locale (`LC_ALL=C PYTHONUTF8=0`: with `LC_ALL=C`
    alone Python 3.11 turns on its UTF-8 mode, and the file system encoding stays utf-8) with `--out` holding an é:
    config.yaml could not be written (a traceback). Stderr closed (`2>&-`): the first progress bar raised (exit 1, a
    traceback nobody saw). Both pipes closed by their reader (`| head -1`): the run stopped at its first line. Each now
    finishes its run, exit 0, no traceback; the folder's log keeps every line."""
    from conftest import make_fake_fashion_mnist

    data = make_fake_fashion_mnist(tmp_path / "data", n_train=120, n_test=20)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "reffakd", "softlabels", "--data-dir", str(data), "--ae-epochs", "1",
               "--ae-batch-size", "32", "--no-plots", "--val-size", "20", "--no-download"]  # fmt: skip
    ascii_out = os.fsencode(tmp_path / "caf\u00e9")  # the bytes a UTF-8 shell passes
    runs = {
        "ascii": subprocess.Popen([*map(os.fsencode, command), b"--out", ascii_out], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env={**env, "LC_ALL": "C", "PYTHONUTF8": "0"}),
        "no stderr": subprocess.Popen(["sh", "-c", 'exec "$@" 2>&-', "sh", *command, "--out", str(tmp_path / "quiet")],
                                      stdout=subprocess.DEVNULL, env=env),
        "closed pipe": subprocess.Popen([*command, "--out", str(tmp_path / "head")], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=env),
    }  # fmt: skip
    head = runs["closed pipe"]
    assert head.stdout is not None and head.stderr is not None
    head.stdout.readline()  # | head -1: one line read, then both ends closed
    head.stdout.close()
    head.stderr.close()
    ascii_out_, ascii_err = runs["ascii"].communicate(timeout=120)
    assert runs["ascii"].returncode == 0 and b"Traceback" not in ascii_err, ascii_err[-2000:]
    assert os.path.isfile(os.path.join(ascii_out, b"soft_labels.safetensors"))
    assert ascii_out_.splitlines()[-1] == b"soft labels: " + ascii_out + b"/soft_labels.safetensors"
    for name, folder in (("no stderr", "quiet"), ("closed pipe", "head")):
        assert runs[name].wait(timeout=120) == 0, name
        assert (tmp_path / folder / "soft_labels.safetensors").is_file(), name
        assert "mean own-class probability" in (tmp_path / folder / "log.txt").read_text(), name
