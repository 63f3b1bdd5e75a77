"""Training engine: learns, is deterministic, keeps best and last checkpoints, schedules the LR."""

from __future__ import annotations

import contextlib
import json
import os
import signal

import pytest
import torch

from reffakd import ReffAKDError
from reffakd.data import load_fashion_mnist, split_train_val
from reffakd.engine import (
    FitBatches,
    OptimConfig,
    Selection,
    Step,
    Task,
    TrainingInterrupted,
    TrainOptions,
    build_optimizer,
    build_scheduler,
    fit,
    load_state,
)
from reffakd.io import read_jsonl
from reffakd.models import load_model
from reffakd.pipeline import StudentConfig, train_student
from reffakd.softlabels import Calibration, SoftLabelConfig, build_soft_labels

CPU = torch.device("cpu")
QUIET = TrainOptions(CPU, progress=False, log=lambda _: None)


@pytest.fixture(scope="module")
def splits(fake_fmnist):
    return split_train_val(load_fashion_mnist(fake_fmnist, download=False), val_size=100, seed=0)


def _weights(path) -> dict[str, torch.Tensor]:
    model, _ = load_model(path)
    return model.state_dict()


@pytest.mark.usefixtures("plots")
def test_ce_student_learns_and_writes_its_run(splits, tmp_path) -> None:
    cfg = StudentConfig("ce", optim=OptimConfig(epochs=3, batch_size=32, lr=0.05), seed=1)
    summary = train_student(splits, cfg, tmp_path / "ce", QUIET)
    assert summary["best_val_top1"] > 50.0  # 10 classes: chance is 10 %
    records = read_jsonl(tmp_path / "ce" / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert {"train_loss", "train_ce", "val_top1", "val_top5", "lr", "seconds", "best_epoch"} <= set(records[0])
    best = max(records, key=lambda r: r["val_top1"])
    assert summary["best_epoch"] == best["epoch"]
    assert json.loads((tmp_path / "ce" / "best.json").read_text())["epoch"] == best["epoch"]
    assert json.loads((tmp_path / "ce" / "last.json").read_text())["epoch"] == 3
    assert (
        summary["cost"]["student"]["flops"]
        == summary["train_step_flops_per_image"] * 300 * 3 + summary["forward_flops_per_image"] * 100 * 3
    )
    assert (tmp_path / "ce" / "curves.png").stat().st_size > 0


def test_same_seed_same_weights(splits, tmp_path) -> None:
    cfg = StudentConfig("ce", optim=OptimConfig(epochs=2, batch_size=32), seed=5)
    for name in ("a", "b"):
        train_student(splits, cfg, tmp_path / name, QUIET)
    wa, wb = _weights(tmp_path / "a" / "last.safetensors"), _weights(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    cfg.seed = 6
    train_student(splits, cfg, tmp_path / "c", QUIET)
    wc = _weights(tmp_path / "c" / "last.safetensors")
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_reffakd_student_end_to_end(splits, tmp_path) -> None:
    soft_cfg = SoftLabelConfig(
        Calibration.preset("calibrated", "fashion-mnist"), autoencoder=OptimConfig(epochs=1, batch_size=32)
    )
    soft, cost = build_soft_labels(splits, soft_cfg, tmp_path / "soft", QUIET)
    assert soft.matrix.shape == (10, 10)
    assert soft.metadata["diagnostics"]["mean_own_probability"] == pytest.approx(
        soft_cfg.calibration.target_own_probability, abs=1e-4
    )
    stages = {"autoencoder_training", "embedding", "similarity", "instance_soft_labels"}
    assert set(cost["stages"]) == stages and cost["flops"] > 0
    cfg = StudentConfig(
        "reffakd", optim=OptimConfig(epochs=1, batch_size=32), params={"alpha": 0.5, "temperature": 4.0}
    )
    summary = train_student(
        splits,
        cfg,
        tmp_path / "kd",
        QUIET,
        soft_labels=soft,  # carries the cost of making it (soft.cost)
    )
    record = read_jsonl(tmp_path / "kd" / "metrics.jsonl")[0]
    assert {"train_ce", "train_kd"} <= set(record)
    assert record["train_loss"] == pytest.approx(record["train_ce"] + record["train_kd"], rel=1e-5)
    assert summary["config"]["alpha"] == 0.5 and summary["cost"]["soft_targets"]["flops"] == cost["flops"]


def test_soft_labels_for_other_classes_are_refused(splits, tmp_path) -> None:
    from reffakd import SoftLabels

    soft = SoftLabels(torch.eye(3), ("a", "b", "c"))
    with pytest.raises(ReffAKDError, match="3 classes"):
        train_student(splits, StudentConfig("reffakd"), tmp_path / "x", TrainOptions(progress=False), soft_labels=soft)
    assert not (tmp_path / "x").exists()


def test_multistep_and_cosine_schedules() -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    cfg = OptimConfig(epochs=10, lr=1.0, gamma=0.2)
    assert cfg.resolved_milestones() == [3, 6, 8]
    opt = build_optimizer(params, cfg)
    sched = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1, 1, 1, 0.2, 0.2, 0.2, 0.04, 0.04, 0.008, 0.008])
    assert OptimConfig(epochs=200).resolved_milestones() == [60, 120, 160]  # the paper's schedule
    cos = OptimConfig(epochs=4, lr=1.0, schedule="cosine")
    opt = build_optimizer(params, cos)
    sched = build_scheduler(opt, cos)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": -1}, "learning rate"),
        ({"schedule": "step"}, "schedule"),
        ({"milestones": (5, 50)}, "milestones"),
        ({"momentum": 1.0}, "momentum"),
    ],
)
def test_bad_optimiser_settings(kwargs, match) -> None:
    with pytest.raises(ReffAKDError, match=match):
        OptimConfig(epochs=kwargs.pop("epochs", 10), **kwargs).validate()


def test_distillers_see_training_progress_step_by_step(splits, tmp_path) -> None:
    """forward_train gets the progress in epochs at the end of each step, so a warm-up ramps within an epoch."""
    from reffakd.data import TensorBatches
    from reffakd.distillers import CrossEntropy
    from reffakd.engine import fit
    from reffakd.models import create_model

    seen: list[float] = []

    class Recorder(CrossEntropy):
        def forward_train(self, images, targets, epoch):
            seen.append(epoch)
            return super().forward_train(images, targets, epoch)

    student = create_model("lenet5", num_classes=10, in_channels=1, image_size=(32, 32))
    batches = TensorBatches(splits.train, 100)  # 300 images: 3 steps per epoch
    fit(
        Recorder(student),
        FitBatches(batches, TensorBatches(splits.val, 100)),
        OptimConfig(epochs=2, batch_size=100),
        tmp_path / "r",
        QUIET,
        checkpoint_meta={
            "model": "lenet5",
            "num_classes": 10,
            "in_channels": 1,
            "image_size": [32, 32],
            "class_names": list(splits.class_names),
            "mean": [0.0],
            "std": [1.0],
        },
    )
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0, 4 / 3, 5 / 3, 2.0])


class _Pairs:
    """Shuffled (x, y) batches that can restart mid-epoch: what ``fit`` needs of its training batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order: torch.Tensor | None = None

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self):
        return self.iter_from()

    def iter_from(self, order=None, start=0):
        self.order = order if order is not None else torch.randperm(len(self.y), generator=self.generator)
        for i in range(start, len(self)):
            idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]


class _Regression(torch.nn.Module):
    """A task that is no classifier: a linear map fitted by MSE, selected on the lowest validation MSE,
    with state outside its module (a step counter) that a resume must restore."""

    selection = Selection("val_mse", higher_is_better=False)
    log_prefix = "regression "
    checkpoint_keys = ("val_mse",)

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(4, 1)
        self.steps, self.stop_at = 0, stop_at

    def trainable(self):
        return self.net

    def training_step(self, x, y, progress):
        self.steps += 1
        if self.steps == self.stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        out = self.net(x).squeeze(1)
        return Step(out, {"mse": torch.nn.functional.mse_loss(out, y)}, {"close": int((out - y).abs().lt(0.5).sum())})

    def cuda_graph_blocker(self):
        return "it counts its steps on the host"

    def train_metrics(self, counts, seen):
        return {"close": counts["close"] / seen}

    @torch.no_grad()
    def evaluate(self, batches, speed, device):
        sums = {"squared_error": 0.0, "images": 0}
        for x, y in batches:
            sums["squared_error"] += float(((self.net(x).squeeze(1) - y) ** 2).sum())
            sums["images"] += len(y)
        return sums

    def val_metrics(self, sums):
        return {"mse": sums["squared_error"] / sums["images"], "images": sums["images"]}

    def extra_state(self):
        return {"steps": self.steps, "as_tensor": torch.tensor([self.steps])}

    def load_extra_state(self, state):
        assert int(state["as_tensor"]) == state["steps"]
        self.steps = state["steps"]

    def ddp(self, wrap):
        return contextlib.nullcontext()

    def epoch_summary(self, record, best):
        return f"mse {record['train_mse']:.4f}  val mse {record['val_mse']:.4f} (best {best:.4f})"


def test_the_loop_trains_any_task_and_resumes_it_exactly(tmp_path) -> None:
    """``fit`` through the Task protocol alone: named losses and counts in the log, best by the task's
    metric (lower here), the task's own state saved and restored, a mid-epoch resume to the same weights."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(120, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(120, generator=g)
    val = [(x[:40], y[:40])]
    cfg = OptimConfig(epochs=3, batch_size=16, lr=0.05, momentum=0.0)
    meta = {"model": "linear"}

    def run(task, out, **kw):
        options = TrainOptions(progress=False, **kw)
        return fit(task, FitBatches(_Pairs(x[40:], y[40:], 16), val), cfg, out, options, checkpoint_meta=meta)

    lines: list[str] = []
    straight = _Regression()
    assert isinstance(straight, Task)
    result = run(straight, tmp_path / "a", log=lines.append)
    records = read_jsonl(tmp_path / "a" / "metrics.jsonl")
    assert {"train_loss", "train_mse", "train_close", "val_mse", "best_epoch"} <= set(records[0])
    assert "val_top1" not in records[0] and lines[0].startswith("regression epoch   1/3  mse")
    best = min(records, key=lambda r: r["val_mse"])
    assert result.best_epoch == best["epoch"] and result.best_value == best["val_mse"]
    assert json.loads((tmp_path / "a" / "best.json").read_text())["val_mse"] == best["val_mse"]
    with pytest.raises(AttributeError):
        result.best_val_top1  # noqa: B018  (a regression has no top-1)

    with pytest.raises(TrainingInterrupted, match="in regression epoch 2 after batch 2/5"):
        run(_Regression(stop_at=7), tmp_path / "b", log=lambda _: None)  # 5 steps per epoch: epoch 2's second
    assert load_state(tmp_path / "b").extra["steps"] == 7
    resumed = _Regression()
    run(resumed, tmp_path / "b", resume=True, log=lambda _: None)
    assert resumed.steps == straight.steps == 15
    wa, wb = straight.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert read_jsonl(tmp_path / "b" / "metrics.jsonl") == [
        {**r, "seconds": s["seconds"]} for r, s in zip(records, read_jsonl(tmp_path / "b" / "metrics.jsonl"))
    ]


def test_one_options_object_travels_to_the_loop(tmp_path, monkeypatch) -> None:
    """``train_student`` and ``fit`` take ``TrainOptions``, not a keyword per option (at most 8 parameters each); a
    rank other than 0 keeps them without progress bars or log lines; under torchrun the entry joins the process
    group, and ``fit`` refuses one not joined in one line, before writing."""
    import inspect

    from reffakd.engine import distributed

    assert len(inspect.signature(train_student).parameters) <= 8 and len(inspect.signature(fit).parameters) <= 8
    options = TrainOptions(progress=True, log=print, tensorboard=True)
    assert options.on_this_rank() is options
    monkeypatch.setattr(distributed, "is_main_process", lambda: False)
    other = options.on_this_rank()
    assert not other.progress and other.log is not print and other.tensorboard and other.speed == options.speed
    monkeypatch.undo()
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(key, value)
    x, y = torch.randn(32, 4), torch.randn(32)
    with pytest.raises(ReffAKDError, match=r"^under torchrun join the process group before building the model"):
        fit(_Regression(), FitBatches(_Pairs(x, y, 16), [(x, y)]), OptimConfig(epochs=1), tmp_path / "r", QUIET,
            checkpoint_meta={})  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_epoch_sums_stay_on_the_device_until_read_once() -> None:
    """The loop adds each step's losses and counts as tensors (no host sync per step); ``totals`` reads them once,
    equal to the per-step arithmetic in float64."""
    from reffakd.engine import EpochState

    ep = EpochState(1, 0.1)
    steps = [(32, 0.5, 0.25, 7), (32, 0.75, 0.5, 9), (11, 1.25, 1.0, 3)]
    for batch, total, ce, correct in steps:
        ep.add(batch, torch.tensor(total), {"ce": torch.tensor(ce)}, {"correct": torch.tensor(correct)})
    assert isinstance(ep.sums["loss"], torch.Tensor) and isinstance(ep.counts["correct"], torch.Tensor)
    sums, counts = ep.totals()
    assert sums == {"ce": 32 * 0.25 + 32 * 0.5 + 11 * 1.0, "loss": 32 * 0.5 + 32 * 0.75 + 11 * 1.25}
    assert counts == {"correct": 19.0} and ep.seen == 75 and ep.step == 3
    assert EpochState(2, 0.1).totals() == ({}, {})  # a stop before an epoch's first step (a Ctrl-C between epochs)


def test_evaluate_counts_match_an_independent_computation():
    """Hits at 1 and 5 and the summed cross-entropy, over uneven batches, against NumPy in float64."""
    import numpy as np

    from reffakd.engine.metrics import evaluate_counts

    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(53, 8, generator=gen), torch.randint(0, 7, (53,), generator=gen)
    model = torch.nn.Linear(8, 7)
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 53, 16)]  # 16, 16, 16, 5
    counts = evaluate_counts(model, batches)
    with torch.no_grad():
        z = model(x).double().numpy()
    labels = y.numpy()
    rank = (z > z[np.arange(53), labels][:, None]).sum(axis=1)  # classes scored above the true one
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    assert counts["correct1"] == int((rank == 0).sum())
    assert counts["correct5"] == int((rank < 5).sum())
    assert counts["images"] == 53
    assert counts["loss_sum"] == pytest.approx(-log_p[np.arange(53), labels].sum(), rel=1e-6)
    assert evaluate_counts(model, []) == {"correct1": 0, "correct5": 0, "loss_sum": 0.0, "images": 0}
