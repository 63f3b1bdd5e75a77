"""Runs that survive: exact resume, crash-safe resume checkpoints, clean stops on SIGINT/SIGTERM, speed options.

Bit-identity needs the same arithmetic in both runs: one thread and deterministic algorithms.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from reffakd import ReffAKDError, pipeline
from reffakd.cli import as_flags, main
from reffakd.data import load_fashion_mnist, split_train_val
from reffakd.engine import OptimConfig, SpeedOptions, TrainingInterrupted, TrainOptions, load_state
from reffakd.engine import resume as resume_mod
from reffakd.engine.speed import SPEED_KEYS
from reffakd.io import read_jsonl
from reffakd.models import load_model
from reffakd.pipeline import StudentConfig, train_student

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]


def quiet(**options: Any) -> TrainOptions:
    """A CPU run's options without progress bars; the speed options among ``options`` go to its ``SpeedOptions``."""
    speed = {k: options.pop(k) for k in SPEED_KEYS if k in options}
    return TrainOptions(CPU, SpeedOptions(**speed), progress=False, **options)


@pytest.fixture(scope="module")
def splits(fake_fmnist):
    return split_train_val(load_fashion_mnist(fake_fmnist, download=False), val_size=100, seed=0)


@pytest.fixture(autouse=True)
def _deterministic(deterministic_one_thread: None) -> None:
    """Every test of this file: one thread, deterministic algorithms (conftest)."""


def _cfg(epochs: int = 3) -> StudentConfig:
    return StudentConfig("ce", optim=OptimConfig(epochs=epochs, batch_size=32, lr=0.05), seed=3)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path)[0].state_dict()


def _assert_same_run(a: Path, b: Path, sa: dict[str, Any], sb: dict[str, Any]) -> None:
    for name in ("last.safetensors", "best.safetensors"):
        wa, wb = _weights(a / name), _weights(b / name)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{name} differs"
    ra, rb = read_jsonl(a / "metrics.jsonl"), read_jsonl(b / "metrics.jsonl")
    assert [r["epoch"] for r in rb] == [r["epoch"] for r in ra] == list(range(1, len(ra) + 1))
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in ra] == [
        {k: v for k, v in r.items() if k not in drop} for r in rb
    ]
    for key in ("best_epoch", "best_val_top1", "test_best", "test_last"):
        assert sa[key] == sb[key], key
    assert sa["cost"]["student"]["flops"] == sb["cost"]["student"]["flops"]


@pytest.fixture(scope="module")
def reference(splits, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """The uninterrupted run every resumed one must reproduce."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out = tmp_path_factory.mktemp("reference") / "run"
    return out, train_student(splits, _cfg(), out, quiet(log=lambda _: None))


# --------------------------------------------------------------------------- (a) exact resume


def test_resume_after_an_epoch_is_bit_identical(splits, reference, tmp_path) -> None:
    out = tmp_path / "run"

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch   1/"):
            os.kill(os.getpid(), signal.SIGINT)  # handled by fit: the run stops cleanly at the epoch end

    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    with pytest.raises(TrainingInterrupted) as info:
        train_student(splits, _cfg(), out, quiet(log=stop_after_first_epoch))
    assert info.value.exit_code == 130 and "end of epoch 1" in str(info.value)
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1]
    assert load_state(out).epoch == 1 and load_state(out).running is None

    lines: list[str] = []
    summary = train_student(splits, _cfg(), out, quiet(resume=True, log=lines.append))
    assert any(line.startswith("resuming from") for line in lines)
    _assert_same_run(reference[0], out, reference[1], summary)
    assert summary["cost"]["student"]["details"]["seconds_before_resume"] > 0
    assert [p.name for p in out.glob("resume*")] == ["resume.safetensors"] and not list(out.glob("*.tmp"))


def test_resume_inside_an_epoch_is_bit_identical(splits, reference, tmp_path, monkeypatch) -> None:
    """SIGINT in the middle of epoch 2: the step finishes, the position inside the epoch is saved."""
    out = tmp_path / "run"
    build = pipeline.build_distiller
    calls = {"n": 0}

    def build_with_signal(*args: Any, **kwargs: Any):
        distiller = build(*args, **kwargs)
        forward = distiller.forward_train

        def forward_train(images, targets, epoch):
            calls["n"] += 1
            if calls["n"] == 14:  # epoch 2 has 10 batches of 32 (300 images): this is its 4th
                os.kill(os.getpid(), signal.SIGTERM)
            return forward(images, targets, epoch)

        distiller.forward_train = forward_train
        return distiller

    monkeypatch.setattr(pipeline, "build_distiller", build_with_signal)
    with pytest.raises(TrainingInterrupted) as info:
        train_student(splits, _cfg(), out, quiet(log=lambda _: None))
    assert info.value.exit_code == 143 and "in epoch 2 after batch 4/10" in str(info.value)
    state = load_state(out)
    assert state.epoch == 1 and state.running is not None and state.running.step == 4 and state.running.seen == 128
    monkeypatch.setattr(pipeline, "build_distiller", build)

    summary = train_student(splits, _cfg(), out, quiet(resume=True, log=lambda _: None))
    _assert_same_run(reference[0], out, reference[1], summary)


def test_resume_refuses_another_run_and_starts_afresh_without_checkpoint(splits, tmp_path) -> None:
    out = tmp_path / "run"
    train_student(splits, _cfg(epochs=1), out, quiet(log=lambda _: None))
    with pytest.raises(ReffAKDError, match=r"different run \(optim.epochs 1 -> 2"):
        train_student(splits, _cfg(epochs=2), out, quiet(resume=True, log=lambda _: None))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "metrics.jsonl").write_text('{"epoch": 1}\n')  # a run killed before its first checkpoint
    train_student(splits, _cfg(epochs=1), fresh, quiet(resume=True, log=lambda _: None))
    assert [r["epoch"] for r in read_jsonl(fresh / "metrics.jsonl")] == [1]
    with pytest.raises(ReffAKDError, match="no resume checkpoint at"):
        train_student(splits, _cfg(epochs=1), tmp_path / "x", quiet(resume=tmp_path / "nowhere", log=lambda _: None))


# --------------------------------------------------------------------------- (b) crash-safe checkpoint writes


def _state_tensors_equal(a, b) -> bool:
    return a.epoch == b.epoch and all(torch.equal(a.model[k], b.model[k]) for k in a.model)


def test_a_write_killed_midway_leaves_the_previous_checkpoint(splits, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    train_student(splits, _cfg(epochs=1), out, quiet(log=lambda _: None))
    before = load_state(out)
    newer = load_state(out)
    newer.epoch = 7
    newer.history = [{**newer.history[0], "epoch": e} for e in range(1, 8)]  # a checkpoint agrees with itself
    newer.model = {k: v + 1 for k, v in newer.model.items()}

    def torn_save_file(tensors, filename, metadata=None):  # the process dies after part of the file
        Path(filename).write_bytes(b"\x00" * 100)
        raise OSError("killed while writing")

    with monkeypatch.context() as m:
        m.setattr(resume_mod, "save_file", torn_save_file)
        with pytest.raises(OSError):
            resume_mod.save_state(out, newer)
    assert _state_tensors_equal(load_state(out), before)
    assert not list(out.glob(".*.tmp")) and [p.name for p in out.glob("resume*")] == ["resume.safetensors"]

    # Dying after the new file is written, before it is renamed over the old one: the old one is intact,
    # and a whole temporary file left behind is ignored.
    with monkeypatch.context() as m:
        m.setattr(resume_mod, "_fsync_file", lambda path: (_ for _ in ()).throw(OSError("killed")))
        with pytest.raises(OSError):
            resume_mod.save_state(out, newer)
    orphan = out / ".resume.safetensors.killed.tmp"
    resume_mod.save_state(tmp_path / "other", newer)
    (tmp_path / "other" / "resume.safetensors").rename(orphan)
    assert _state_tensors_equal(load_state(out), before)

    resume_mod.save_state(out, newer)  # the next good write takes over and clears the orphan
    assert _state_tensors_equal(load_state(out), newer)
    assert not orphan.exists() and [p.name for p in out.glob("resume*")] == ["resume.safetensors"]


def test_a_damaged_checkpoint_is_one_clear_error(splits, tmp_path) -> None:
    out = tmp_path / "run"
    train_student(splits, _cfg(epochs=1), out, quiet(log=lambda _: None))
    checkpoint = out / "resume.safetensors"
    whole = checkpoint.read_bytes()
    checkpoint.write_bytes(whole[:-10] + b"0123456789")  # tensor bytes changed, the file still parses
    with pytest.raises(ReffAKDError, match="checksum differs"):
        load_state(out)
    checkpoint.write_bytes(whole[: len(whole) // 2])  # torn
    with pytest.raises(ReffAKDError, match="unreadable"):
        train_student(splits, _cfg(epochs=1), out, quiet(resume=True, log=lambda _: None))
    with pytest.raises(ReffAKDError, match="does not exist"):
        load_state(tmp_path / "nowhere.safetensors")


# --------------------------------------------------------------------------- (c) signals to a real process


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"{path} never appeared (rc {proc.returncode}): {err[-2000:]}")
        time.sleep(0.02)


def test_sigint_to_the_cli_saves_and_exits_130_then_resumes_exactly(splits, fake_fmnist, tmp_path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "reffakd",
        "train",
        "--out",
        str(out),
        "--data-dir",
        str(fake_fmnist),
        "--val-size",
        "100",
        "--no-progress",
        "--no-plots",
        "--no-download",
        "--device",
        "cpu",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--seed",
        "3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staging = tmp_path / "run.partial"
    _wait_for(staging / "resume.safetensors", proc)  # epoch 1 is done
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("reffakd:") and "interrupt" in err, err
    assert f"continue with: reffakd {shlex.join(cmd[3:])} --resume" in err and not out.exists(), err
    state = load_state(staging)
    assert 1 <= state.epoch < 4
    assert [r["epoch"] for r in read_jsonl(staging / "metrics.jsonl")] == list(range(1, state.epoch + 1))

    # The command it printed finishes the run (in this process, one thread as the child had) to the weights, metrics
    # and summary of the same run never stopped.
    assert main([*cmd[3:], "--resume"]) == 0
    assert not staging.exists()
    cfg = StudentConfig("ce", optim=OptimConfig(epochs=4, batch_size=32, lr=0.05, schedule="cosine"), seed=3)
    full = train_student(splits, cfg, tmp_path / "full", quiet(log=lambda _: None))
    _assert_same_run(tmp_path / "full", out, full, json.loads((out / "summary.json").read_text()))


WORKER = """
import sys, torch
from reffakd.data import load_fashion_mnist, split_train_val
from reffakd.engine import OptimConfig, TrainingInterrupted, TrainOptions
from reffakd.pipeline import StudentConfig, train_student
splits = split_train_val(load_fashion_mnist(sys.argv[1], download=False), val_size=100, seed=0)
try:
    train_student(splits, StudentConfig("ce", optim=OptimConfig(epochs=50, batch_size=32)), sys.argv[2],
                  TrainOptions(progress=False, log=lambda line: print(line, flush=True)))
except TrainingInterrupted as exc:  # what the CLI does with it
    print(f"reffakd: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def test_sigterm_saves_and_exits_143(fake_fmnist, tmp_path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(fake_fmnist), str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(out / "resume.safetensors", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM" in err and "resume.safetensors" in err
    state = load_state(out)
    assert state.epoch >= 1 and len(read_jsonl(out / "metrics.jsonl")) == state.epoch


def _compare_with_two_workers_training(out: Path, data: Path) -> subprocess.Popen:
    """``reffakd compare --jobs 2`` of ce and ls (5,000 epochs) in a child process, once both workers are training
    (their first epoch is logged)."""
    argv = _cli_argv("compare", out, data, "--epochs", "5000", "--methods", "ce,ls", "--seeds", "0", "--jobs", "2")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reffakd", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for method in ("ce", "ls"):
        _wait_for(out / "runs" / method / "seed0.partial" / "metrics.jsonl", proc)
    return proc


def test_sigterm_to_compare_with_jobs_stops_its_workers_with_checkpoints(fake_fmnist, tmp_path) -> None:
    """The parent stops its --jobs workers (each writes its run's resume checkpoint, then ends with the pool), then
    exits 143 with the command that continues; it used to wait forever for a worker that had stopped its run but
    not itself."""
    out = tmp_path / "cmp"
    proc = _compare_with_two_workers_training(out, fake_fmnist)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 143, err
    assert "reffakd: terminated by SIGTERM; continue with the same command: reffakd compare" in err, err
    for method in ("ce", "ls"):
        staging = out / "runs" / method / "seed0.partial"
        assert 1 <= load_state(staging).epoch < 5000
    assert "leaked" not in err, err  # the workers ended normally, cleaning up after themselves


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting to be reaped has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_compare_workers_end_with_a_parent_killed_outright(fake_fmnist, tmp_path) -> None:
    """SIGKILL leaves the parent no chance to stop its --jobs workers: each stops its run with a resume checkpoint
    and exits by itself, so the same command continues (their run locks released) instead of being refused."""
    out = tmp_path / "cmp"
    proc = _compare_with_two_workers_training(out, fake_fmnist)
    workers = [pid for pid in _children(proc.pid) if "spawn" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) >= 2
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 90
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    alive = [pid for pid in workers if _running(pid)]
    for pid in alive:  # leave nothing behind, whatever the outcome
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the workers outlived their parent"
    for method in ("ce", "ls"):
        assert 1 <= load_state(out / "runs" / method / "seed0.partial").epoch < 5000


# --------------------------------------------------------------------------- options of fit


def test_speed_options_train_and_bad_values_are_one_line(splits, tmp_path) -> None:
    cfg = _cfg(epochs=1)
    summary = train_student(splits, cfg, tmp_path / "fast", quiet(amp="bf16", channels_last=True, log=lambda _: None))
    assert summary["config"]["speed"] == {"amp": "bf16", "channels_last": True, "compile": False}
    assert summary["best_val_top1"] > 10.0
    for kwargs, match in (({"amp": "fp16"}, "needs a CUDA device"), ({"amp": "fp8"}, "unknown")):
        with pytest.raises(ReffAKDError, match=match):
            train_student(splits, cfg, tmp_path / "x", quiet(log=lambda _: None, **kwargs))


def test_tensorboard_needs_its_package(splits, tmp_path, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ReffAKDError, match="(?i)pip install tensorboard"):
        train_student(splits, _cfg(epochs=1), tmp_path / "tb", quiet(tensorboard=True, log=lambda _: None))


def test_compile_that_cannot_work_is_one_clear_line(monkeypatch) -> None:
    from reffakd.engine import speed

    def broken(*args: Any, **kwargs: Any):
        raise RuntimeError("no working C++ compiler found\n(a long traceback follows)")

    speed._compile_probe.cache_clear()
    monkeypatch.setattr(torch, "compile", broken)
    try:
        with pytest.raises(ReffAKDError) as info:
            speed.SpeedOptions(compile=True).validate(CPU)
    finally:
        speed._compile_probe.cache_clear()
    assert (  # as the CLI prints it: the library names its parameter, the CLI shows the flag
        as_flags(info.value)
        == "--compile: the torch compiler does not work here (RuntimeError: no working C++ compiler found); "
        "run without --compile"
    )


def test_compile_mode_reaches_torch_compile_and_the_run_record(splits, tmp_path, monkeypatch) -> None:
    """reduce-overhead (CUDA graphs on a GPU) is passed to ``torch.compile`` and recorded with the run; the default
    mode is left out of the record, so runs made before the mode existed resume as they were."""
    from reffakd.engine import speed

    modes: list[str | None] = []
    monkeypatch.setattr(speed, "_compile_probe", lambda device_type: None)
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: modes.append(kw.get("mode")))
    summary = train_student(
        splits, _cfg(epochs=1), tmp_path / "ro", quiet(compile=True, compile_mode="reduce-overhead", log=lambda _: None)
    )
    assert modes == ["reduce-overhead"]
    assert summary["config"]["speed"] == {
        "amp": "none", "channels_last": False, "compile": True, "compile_mode": "reduce-overhead"
    }  # fmt: skip
    assert speed.SpeedOptions(compile=True).to_dict() == {"amp": "none", "channels_last": False, "compile": True}
    speed.SpeedOptions(compile=True).prepare_model(torch.nn.Linear(2, 2))
    assert modes[-1] is None  # the default mode: torch.compile's own default
    with pytest.raises(ReffAKDError, match="compile_mode 'fast' is unknown; allowed: default, reduce-overhead"):
        speed.SpeedOptions(compile=True, compile_mode="fast").validate(CPU)


def test_tensorboard_mirrors_each_epoch_once(splits, tmp_path, monkeypatch) -> None:
    """With a stand-in SummaryWriter (tensorboard is no dependency): one scalar per number and epoch; a resume
    purges later steps."""
    import importlib.util
    import types

    writers: list[dict[str, Any]] = []

    class FakeWriter:
        def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
            self.record = {"log_dir": log_dir, "purge_step": purge_step, "scalars": []}
            writers.append(self.record)

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            self.record["scalars"].append((tag, step))

        def flush(self) -> None: ...

        def close(self) -> None: ...

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "tensorboard" else real(name, *a)
    )
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    out = tmp_path / "run"
    train_student(splits, _cfg(epochs=2), out, quiet(tensorboard=True, log=lambda _: None))
    train_student(splits, _cfg(epochs=2), out, quiet(tensorboard=True, resume=True, log=lambda _: None))
    assert [w["purge_step"] for w in writers] == [None, 3] and writers[0]["log_dir"] == str(out / "tensorboard")
    scalars = writers[0]["scalars"]
    assert ("train/loss", 1) in scalars and ("val/top1", 2) in scalars and ("lr", 1) in scalars
    assert len(scalars) == len(set(scalars)) and writers[1]["scalars"] == []


# --------------------------------------------------------------------------- (d) the autoencoder and `reffakd run`


def _cli_argv(command: str, out: Path, data: Path, *options: str) -> list[str]:
    return [command, "--out", str(out), "--data-dir", str(data), "--val-size", "100", "--no-progress", "--no-plots"] + [
        "--no-download",
        "--device",
        "cpu",
        *options,
    ]


def _interrupt_cli(argv: list[str], checkpoint: Path, tmp_path: Path) -> str:
    """Start ``reffakd ARGV`` in a child, SIGINT it once ``checkpoint`` exists; its one-line stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reffakd", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for(checkpoint, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "interrupted by SIGINT" in err and "--resume" in err, err
    return err


def _assert_same_tensors(a: Path, b: Path) -> None:
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), f"{a.name} differs"


def _assert_same_soft_labels(a: Path, b: Path) -> None:
    from reffakd.softlabels import SoftLabels

    sa, sb = SoftLabels.load(a / "soft_labels.safetensors"), SoftLabels.load(b / "soft_labels.safetensors")
    assert torch.equal(sa.matrix, sb.matrix) and torch.equal(sa.similarity, sb.similarity)
    assert (a / "soft_labels.safetensors").read_bytes() == (b / "soft_labels.safetensors").read_bytes()
    _assert_same_tensors(a / "autoencoder.safetensors", b / "autoencoder.safetensors")
    drop = ("seconds",)
    ra, rb = read_jsonl(a / "autoencoder_metrics.jsonl"), read_jsonl(b / "autoencoder_metrics.jsonl")
    assert [{k: v for k, v in r.items() if k not in drop} for r in ra] == [
        {k: v for k, v in r.items() if k not in drop} for r in rb
    ]


def test_softlabels_cli_interrupted_in_the_autoencoder_resumes_exactly(fake_fmnist, tmp_path) -> None:
    """SIGINT while the autoencoder trains: exit 130, a checkpoint in OUT.partial; --resume ends where a run never
    stopped does: the same autoencoder and soft labels, bit for bit, and the cost ledger counts both sessions."""
    options = ("--ae-epochs", "4", "--ae-batch-size", "32", "--samples-per-class", "10", "--augment-embeddings")
    out = tmp_path / "soft"
    staging = tmp_path / "soft.partial"
    _interrupt_cli(_cli_argv("softlabels", out, fake_fmnist, *options), staging / "resume.safetensors", tmp_path)
    state = load_state(staging)
    assert state.epoch < 4 or state.running is not None  # stopped inside the autoencoder's training
    assert not out.exists() and not (staging / "soft_labels.safetensors").exists()

    assert main(_cli_argv("softlabels", out, fake_fmnist, *options, "--resume")) == 0
    assert main(_cli_argv("softlabels", tmp_path / "straight", fake_fmnist, *options)) == 0
    _assert_same_soft_labels(tmp_path / "straight", out)
    assert not staging.exists() and (out / "resume.safetensors").is_file()
    cost = json.loads((out / "soft_labels_cost.json").read_text())["stages"]["autoencoder_training"]
    assert cost["details"]["seconds_before_resume"] > 0 and cost["seconds"] >= cost["details"]["seconds_before_resume"]
    straight = json.loads((tmp_path / "straight" / "soft_labels_cost.json").read_text())
    assert cost["flops"] == straight["stages"]["autoencoder_training"]["flops"]


def test_run_cli_interrupted_in_a_student_resumes_exactly(fake_fmnist, tmp_path) -> None:
    """`reffakd run` stopped by SIGINT in its second student: --resume gives the soft labels and both students of
    a run never stopped, bit for bit."""
    options = ("--ae-epochs", "1", "--epochs", "4", "--batch-size", "32", "--lr", "0.05", "--samples-per-class", "10")
    out = tmp_path / "run"
    staging = tmp_path / "run.partial"
    err = _interrupt_cli(
        _cli_argv("run", out, fake_fmnist, *options), staging / "reffakd-paper" / "resume.safetensors", tmp_path
    )
    assert "reffakd-paper" in err
    state = load_state(staging / "reffakd-paper")
    assert state.epoch < 4 or state.running is not None  # stopped inside the second student's training

    assert main(_cli_argv("run", out, fake_fmnist, *options, "--resume")) == 0
    assert main(_cli_argv("run", tmp_path / "straight", fake_fmnist, *options)) == 0
    straight = tmp_path / "straight"
    _assert_same_soft_labels(straight / "softlabels", out / "softlabels")
    for name in ("ce", "reffakd-paper"):
        sa, sb = (json.loads((d / name / "summary.json").read_text()) for d in (straight, out))
        _assert_same_run(straight / name, out / name, sa, sb)
    assert not staging.exists()
