"""Distributed training: shards that add up to the single-process epoch, and torchrun + DDP on CPU/gloo
reaching the single-process weights with one set of files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ddp_worker
from reffakd import ReffAKDError
from reffakd.data import BatchAugment, TensorBatches, load_imagefolder, make_batches, split_train_val
from reffakd.data.loader import shard_bounds
from reffakd.engine import load_state
from reffakd.io import read_jsonl
from test_datasets import make_fake_folder

ROOT = Path(__file__).resolve().parents[1]


def test_shard_bounds_split_like_tensor_split() -> None:
    for size in range(0, 12):
        for world in (1, 2, 3, 4):
            parts = [shard_bounds(size, (r, world)) for r in range(world)]
            expected = torch.tensor_split(torch.arange(size), world)
            assert [list(range(lo, hi)) for lo, hi in parts] == [t.tolist() for t in expected]


@pytest.mark.parametrize("streaming", [False, True])
def test_shards_together_are_the_single_process_batches(tmp_path: Path, streaming: bool) -> None:
    """Same permutation and augmentation draws on every rank; rank r keeps its part of each global batch."""
    root = make_fake_folder(tmp_path / "data", per_class=8)
    split = split_train_val(load_imagefolder(data_dir=root, streaming=streaming), 4, seed=3).train
    kw = dict(shuffle=True, augment=BatchAugment(pad=4, flip=True, rotation=15.0), num_workers=0)
    single = make_batches(split, 5, generator=torch.Generator().manual_seed(7), **kw)
    expected = [b for _ in range(2) for b in single]  # two epochs
    for world in (2, 3):
        ranks = [
            make_batches(split, 5, generator=torch.Generator().manual_seed(7), shard=(r, world), **kw)
            for r in range(world)
        ]
        assert all(len(r) == len(single) for r in ranks)
        got = []
        for _ in range(2):
            per_rank = [list(r) for r in ranks]
            got += [(torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])) for parts in zip(*per_rank)]
        assert len(got) == len(expected)
        for (xa, ya), (xb, yb) in zip(expected, got):
            assert torch.equal(ya, yb) and torch.equal(xa, xb)


def test_iter_from_continues_an_epoch(tmp_path: Path) -> None:
    root = make_fake_folder(tmp_path / "data", per_class=8)
    split = split_train_val(load_imagefolder(data_dir=root), 4, seed=3).train
    g = torch.Generator().manual_seed(1)
    batches = TensorBatches(split, 5, shuffle=True, augment=BatchAugment(pad=2), generator=g)
    it = iter(batches)
    next(it)
    state, order = g.get_state(), batches.order
    tail = list(it)
    g.set_state(state)
    again = list(batches.iter_from(order, 1))
    assert len(again) == len(tail) == len(batches) - 1
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(tail, again))


def test_global_batch_must_divide_by_the_world(
    fake_fmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(key, value)
    with pytest.raises(ReffAKDError, match="batch size 33 is not divisible by the 2 processes"):
        ddp_worker.run(fake_fmnist, tmp_path / "x", 33, 1)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "methods",
    [
        # cs-kd:float64: CS-KD's sharded pairs and partner forward passes in float64, where two ranks reach one
        # process's weights within 1e-12 after two epochs: the same computation, so float32's 1e-5 is rounding alone
        ("ce", "ols", "ps-kd", "cs-kd:float64"),
        # through the command line: `torchrun -m reffakd train`, the worker's settings as flags
        ("cs-kd",),
    ],
)
def test_torchrun_two_processes_match_one(fake_fmnist: Path, tmp_path: Path, methods: tuple[str, ...]) -> None:
    """One torchrun launch trains several methods (one process-group start, the test suite's time): each reaches the
    single-process weights with one set of files, after two epochs; ols's and ps-kd's source state is reduced over the
    ranks at each epoch end, so it too is the one-process state. A single method runs as `reffakd train` under
    torchrun: rank 0 alone writes the run and prints its folder."""
    epochs, out = 2, tmp_path / "ddp"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    if len(methods) == 1:  # the command line's student schedule is cosine; the worker's OptimConfig's is multistep
        worker = ["-m", "reffakd", "train", "--out", str(out), "--data-dir", str(fake_fmnist), "--no-download",
                  "--val-size", str(ddp_worker.VAL_SIZE), "--batch-size", "32", "--epochs", str(epochs),
                  "--lr", "0.05", "--schedule", "multistep", "--seed", "3", "--method", methods[0], "--device", "cpu",
                  "--no-progress", "--no-plots"]  # fmt: skip
    else:
        worker = [str(ROOT / "tests" / "ddp_worker.py"), str(fake_fmnist), str(out), "32", str(epochs),
                  f"--method={','.join(methods)}"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *worker]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # the one-process references, while torchrun runs
        singles = {
            m: ddp_worker.run(fake_fmnist, tmp_path / m.replace(":", "-"), 32, epochs, m, log=lambda _: None)
            for m in methods
        }
    finally:
        torch.set_num_threads(threads)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert stdout.count(f"epoch   1/{epochs}") == len(methods), stdout  # rank 0 alone logs
    if len(methods) == 1:
        assert stdout.count("run folder:") == 1 and not (tmp_path / "ddp.partial").exists(), stdout

    for name, single in singles.items():
        method, folder, atol = name.partition(":")[0], name.replace(":", "-"), 1e-12 if ":float64" in name else 1e-5
        run = out / folder if len(methods) > 1 else out  # the worker's folder: OUT/NAME for several methods
        # One set of files, the same set a single process writes (the command adds its config and log).
        command = {"config.yaml", "log.txt"} if len(methods) == 1 else set()
        assert {p.name for p in run.iterdir()} == {p.name for p in (tmp_path / folder).iterdir()} | command
        assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == list(range(1, epochs + 1))
        wa, wb = (load_file(p / "last.safetensors") for p in (tmp_path / folder, run))
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wb[k], wa[k], atol=atol, rtol=0, msg=lambda m, k=k, n=name: f"{n} {k}: {m}")
        ddp = json.loads((run / "summary.json").read_text())
        assert ddp["config"]["distributed"] == {"world_size": 2, "per_rank_batch_size": 16, "sync_batchnorm": True}
        assert ddp["best_epoch"] == single["best_epoch"]
        assert ddp["test_last"]["images"] == single["test_last"]["images"] == 100
        assert ddp["test_last"]["top1"] == pytest.approx(single["test_last"]["top1"], abs=1.01)  # one image may flip
        assert ddp["cost"]["student"]["flops"] == single["cost"]["student"]["flops"]  # global image counts
        if method != "ce":
            assert single["cost"]["soft_targets"]["source"] == method
            sa, sb = (load_state(p).extra["source"]["tensors"] for p in (tmp_path / folder, run))
            for k in sa:  # the source's state, summed over the ranks, is the one-process state
                torch.testing.assert_close(sb[k].double(), sa[k].double(), atol=atol, rtol=0)


def _softlabels_argv(out: Path, data: Path) -> list[str]:
    return ["softlabels", "--out", str(out), "--data-dir", str(data), "--no-download", "--val-size", "101",
            "--ae-epochs", "1", "--ae-batch-size", "32", "--device", "cpu", "--no-progress", "--no-plots"]  # fmt: skip


def test_torchrun_softlabels_two_processes_match_one(fake_fmnist: Path, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node=2 reffakd softlabels` (gloo): DDP autoencoder, sharded embedding, all-reduced class
    sums; rank 0 writes one artifact, equal to the one-process soft labels within float tolerance."""
    from safetensors.torch import load_file

    from reffakd.cli import main

    assert main(_softlabels_argv(tmp_path / "single", fake_fmnist)) == 0
    out = tmp_path / "ddp"
    path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "reffakd"]
    proc = subprocess.run([*argv, *_softlabels_argv(out, fake_fmnist)], env=env, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("soft_labels.safetensors") == 1 and proc.stdout.count("autoencoder epoch   1/") == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "single").iterdir())
    assert not (tmp_path / "ddp.partial").exists()
    one, two = load_file(tmp_path / "single" / "soft_labels.safetensors"), load_file(out / "soft_labels.safetensors")
    torch.testing.assert_close(two["similarity"], one["similarity"], atol=1e-5, rtol=0)
    torch.testing.assert_close(two["soft_labels"], one["soft_labels"], atol=1e-5, rtol=0)
    cost = json.loads((out / "soft_labels_cost.json").read_text())
    assert cost["distributed"]["world_size"] == 2
    assert cost["stages"]["embedding"]["details"]["images"] == 299  # every training image, over both ranks


@pytest.mark.parametrize("command", ["run", "compare"])
def test_run_and_compare_under_torchrun_say_what_to_run(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reffakd.cli import main

    for key, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(key, value)
    assert main([command, "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"reffakd {command} does not run under torchrun;" in err
    assert ("reffakd softlabels" in err) if command == "run" else ("--jobs" in err)
    assert not any(tmp_path.iterdir())
