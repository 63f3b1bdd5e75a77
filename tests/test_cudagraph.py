"""``cuda_graph``: the whole training step recorded once per epoch and replayed (``engine.cudagraph``).

CUDA graphs need a GPU (docs/GPU.md has the runs on one). Here the loop's use of ``StepGraph`` is checked on the CPU
with the recording emulated: ``record`` returns the step's outputs without leaving a trace of running it (weights,
optimiser state and random state are put back), and each replay reruns the step on the fixed input buffers and
writes its outputs into the recorded ones, as a graph's replay does. A loop that fed a replay the wrong batch, read
outputs the replay does not rewrite, or recorded a step twice would train different weights than the eager loop.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from reffakd import ReffAKDError
from reffakd.data import BatchAugment
from reffakd.data.dataset import Split
from reffakd.data.loader import TensorBatches
from reffakd.distillers import build_distiller
from reffakd.engine import FitBatches, OptimConfig, TrainOptions, cudagraph, fit
from reffakd.engine.speed import SpeedOptions
from reffakd.engine.task import Step
from reffakd.softlabels import SoftLabels
from reffakd.sources import TeacherNetwork

CUDA = torch.device("cuda")  # validation only looks at the device's type: no GPU is touched


def _student() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    )  # fmt: skip


def _copy_into(recorded, fresh) -> None:
    """A replay's effect: every output tensor rewritten in place (a step's (loss, Step), a batch's tuple)."""
    if isinstance(recorded, torch.Tensor):
        recorded.copy_(fresh)
    elif isinstance(recorded, Step):
        _copy_into((recorded.outputs, recorded.losses, recorded.counts), (fresh.outputs, fresh.losses, fresh.counts))
    elif isinstance(recorded, dict):
        for k in recorded:
            _copy_into(recorded[k], fresh[k])
    else:
        for r, f in zip(recorded, fresh, strict=True):
            _copy_into(r, f)


class EmulatedGraphs:
    """``side_stream_call`` and ``record`` on the CPU, with a graph's semantics (module docstring)."""

    def __init__(self, modules: list[nn.Module], optimizers: list[torch.optim.Optimizer]) -> None:
        self.modules, self.optimizers = modules, optimizers
        self.warmups = self.captures = self.replays = 0

    def side_stream_call(self, fn):
        self.warmups += 1
        return fn()

    def record(self, fn):
        self.captures += 1
        weights = [copy.deepcopy(m.state_dict()) for m in self.modules]
        opt_states = [copy.deepcopy(o.state_dict()) for o in self.optimizers]
        rng = torch.get_rng_state()
        recorded = fn()  # outputs of the right shapes; then nothing of this run may remain
        for m, w in zip(self.modules, weights):
            m.load_state_dict(w)
        for o, s in zip(self.optimizers, opt_states):
            o.load_state_dict(s)
        torch.set_rng_state(rng)

        def replay() -> None:
            self.replays += 1
            _copy_into(recorded, fn())

        return recorded, replay


def _fit(tmp_path, name, cuda_graph, monkeypatch, method="ce", loader=False, milestones=(1, 2), **build):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(100, 1, 8, 8, generator=g), torch.randint(0, 3, (100,), generator=g)
    train = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 100, 16)]  # 6 batches of 16, one of 4
    distiller = build_distiller(method, _student(), num_classes=3, **build)
    emulated = None
    if cuda_graph:
        monkeypatch.setattr(cudagraph, "check_device", lambda device: None)
        original = torch.optim.SGD.__init__

        def sgd_init(opt, *a, **k):  # the emulation must see the optimiser the loop builds
            original(opt, *a, **k)
            emulated.optimizers.append(opt)

        emulated = EmulatedGraphs([distiller.student], [])
        monkeypatch.setattr(torch.optim.SGD, "__init__", sgd_init)
        monkeypatch.setattr(cudagraph, "side_stream_call", emulated.side_stream_call)
        monkeypatch.setattr(cudagraph, "record", emulated.record)
    if loader:  # the in-memory loader: uint8 images gathered, cropped, flipped and scaled (recorded with cuda_graph)
        images = (x * 60 + 128).clamp(0, 255).to(torch.uint8)
        train = TensorBatches(Split(images, y), 16, shuffle=True, augment=BatchAugment(pad=2, flip=True),
                              normalize=((0.5,), (0.25,)), generator=torch.Generator().manual_seed(7),
                              indexed=True)  # fmt: skip
    cfg = OptimConfig(epochs=3, batch_size=16, lr=0.1, milestones=milestones, gamma=0.5)  # (1, 2): a new lr each epoch
    options = TrainOptions(speed=SpeedOptions(cuda_graph=cuda_graph), progress=False, log=lambda _: None)
    result = fit(distiller, FitBatches(train, [(x, y)]), cfg, tmp_path / name, options, checkpoint_meta={})
    monkeypatch.undo()
    return distiller.student.state_dict(), result, emulated


@pytest.mark.parametrize("method", ["ce", "reffakd"])
def test_replayed_steps_train_the_same_weights_as_eager_steps(tmp_path, monkeypatch, method) -> None:
    soft = SoftLabels(torch.softmax(torch.randn(3, 3, generator=torch.Generator().manual_seed(1)), 1), ("a", "b", "c"))
    build = {"soft_labels": soft} if method == "reffakd" else {}
    eager_weights, eager, _ = _fit(tmp_path, "eager", False, monkeypatch, method, **build)
    graph_weights, graphed, emulated = _fit(tmp_path, "graph", True, monkeypatch, method, **build)
    for k, v in eager_weights.items():
        assert torch.equal(v, graph_weights[k]), k
    assert [r["train_loss"] for r in graphed.history] == [r["train_loss"] for r in eager.history]
    assert [r["train_top1"] for r in graphed.history] == [r["train_top1"] for r in eager.history]
    assert [r["lr"] for r in graphed.history] == [0.1, 0.05, 0.025]
    # 7 steps an epoch: 3 warm-up steps, then one graph per epoch replayed for the full batches; the batch of 4 eager.
    assert (emulated.warmups, emulated.captures, emulated.replays) == (cudagraph.WARMUP_STEPS, 3, 3 + 6 + 6)


def test_recorded_batches_and_steps_train_the_same_weights_as_eager_ones(tmp_path, monkeypatch) -> None:
    """The loader's gather-augment-scale recorded too (one graph, after one eager warm-up batch), feeding the recorded
    step: the same batches, hence the same weights, as the eager loader and loop."""
    eager_weights, eager, _ = _fit(tmp_path, "eager", False, monkeypatch, loader=True, milestones=(2,))
    graph_weights, graphed, emulated = _fit(tmp_path, "graph", True, monkeypatch, loader=True, milestones=(2,))
    for k, v in eager_weights.items():
        assert torch.equal(v, graph_weights[k]), k
    assert [r["train_loss"] for r in graphed.history] == [r["train_loss"] for r in eager.history]
    assert [r["lr"] for r in graphed.history] == [0.1, 0.1, 0.05]
    assert emulated.captures == 1 + 2  # the loader's one graph; the step's one per learning rate
    assert emulated.warmups == 1 + cudagraph.WARMUP_STEPS


def test_recorded_loader_yields_the_eager_loader_batches(monkeypatch) -> None:
    monkeypatch.setattr(cudagraph, "side_stream_call", lambda fn: fn())
    monkeypatch.setattr(cudagraph, "record", _emulate)
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (70, 3, 6, 6), dtype=torch.uint8, generator=g), torch.randint(0, 4, (70,)))
    augment = BatchAugment(pad=1, flip=True, rotation=10.0)
    kw = {"shuffle": True, "augment": augment, "normalize": ((0.5,) * 3, (0.2,) * 3), "indexed": True}
    eager = TensorBatches(split, 16, generator=torch.Generator().manual_seed(1), **kw)
    recorded = TensorBatches(split, 16, generator=torch.Generator().manual_seed(1), **kw)
    with cudagraph.batch_graph(recorded) as r:  # what the loop does under cuda_graph
        for _ in range(2):
            for a, b in zip(eager, recorded, strict=True):
                assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert (r.eager, r.captures, r.replays) == (1 + 2, 1, 3 + 4)  # warm-up and the two batches of 6 eager
    assert "gather_batch" not in vars(recorded)  # after the loop, the loader's own batches again
    next(iter(recorded))
    assert (r.eager, r.replays) == (1 + 2, 3 + 4)
    with pytest.raises(ReffAKDError, match="cuda_graph batches are one process's, without pairs"):
        cudagraph.batch_graph(TensorBatches(split, 16, shard=(0, 2)))
    assert cudagraph.batch_graph([(split.images, split.labels)]) is None  # batches read on the host: nothing recorded


def _emulate(fn):
    out = fn()
    return out, lambda: _copy_into(out, fn())


def test_step_graph_replays_the_recorded_step_on_each_batch(monkeypatch) -> None:
    """StepGraph alone: a replay reads the batch copied into its buffers; another shape runs eagerly."""
    calls: list[str] = []

    def step(x: torch.Tensor) -> torch.Tensor:
        calls.append("step")
        return x * 2

    def record(fn):
        out = fn()
        calls.append("record")
        return out, lambda: out.copy_(fn())

    monkeypatch.setattr(cudagraph, "side_stream_call", lambda fn: fn())
    monkeypatch.setattr(cudagraph, "record", record)
    graph = cudagraph.StepGraph(step, torch.device("cpu"))
    for i in range(cudagraph.WARMUP_STEPS):
        assert torch.equal(graph((torch.full((2,), float(i)),)), torch.full((2,), 2.0 * i))
    out = graph((torch.tensor([1.0, 2.0]),))
    assert torch.equal(out, torch.tensor([2.0, 4.0])) and graph.captures == 1
    assert graph((torch.tensor([5.0, 6.0]),)) is out and torch.equal(out, torch.tensor([10.0, 12.0]))
    odd = graph((torch.tensor([1.0]),))
    assert odd is not out and torch.equal(odd, torch.tensor([2.0])) and graph.eager == cudagraph.WARMUP_STEPS + 1
    graph.new_epoch(0.1)  # a first learning rate: the graph is recorded again
    graph((torch.tensor([3.0, 3.0]),))
    graph.new_epoch(0.1)  # the same rate: the graph stays
    graph((torch.tensor([3.0, 3.0]),))
    assert graph.captures == 2 and graph.replays == 4
    graph.new_epoch(0.02)
    graph((torch.tensor([3.0, 3.0]),))
    assert graph.captures == 3


def test_speed_options_refuse_what_a_graph_cannot_record() -> None:
    with pytest.raises(ReffAKDError, match="^cuda_graph needs a CUDA device, not cpu; train without cuda_graph$"):
        SpeedOptions(cuda_graph=True).validate(torch.device("cpu"))
    with pytest.raises(ReffAKDError, match="cannot record amp fp16: its gradient scaler reads the device"):
        SpeedOptions(amp="fp16", cuda_graph=True).validate(CUDA)
    with pytest.raises(ReffAKDError, match="cuda_graph and compile are two ways to replay the step; choose one"):
        SpeedOptions(compile=True, cuda_graph=True).validate(CUDA)
    SpeedOptions(amp="bf16", channels_last=True, cuda_graph=True).validate(CUDA) if torch.cuda.is_available() else None
    assert "cuda_graph" not in SpeedOptions().to_dict()  # runs made before the option keep their identity
    assert SpeedOptions(cuda_graph=True).to_dict()["cuda_graph"] is True


def test_each_method_says_whether_its_step_can_be_recorded() -> None:
    soft = SoftLabels(torch.full((3, 3), 1 / 3), ("a", "b", "c"))
    recordable = {
        "ce": {}, "ls": {}, "tfkd-reg": {}, "reffakd": {"soft_labels": soft},
        "dkd-aesl": {"soft_labels": soft, "params": {"warmup_epochs": 0}},
    }  # fmt: skip
    for method, build in recordable.items():
        assert build_distiller(method, _student(), num_classes=3, **build).cuda_graph_blocker() is None, method
    dkd = build_distiller("dkd-aesl", _student(), num_classes=3, soft_labels=soft, params={"warmup_epochs": 2})
    assert dkd.cuda_graph_blocker() == "DKD's warm-up ramps its weight step by step (warmup_epochs 2; 0 has none)"
    teacher = TeacherNetwork(nn.Linear(1, 3), 3, forward_flops_per_image=0)
    kd = build_distiller("kd", _student(), num_classes=3, teacher=teacher)
    assert kd.cuda_graph_blocker() == "the teacher's forward passes are timed step by step for the cost ledger"
    for method in ("ols", "ps-kd", "cs-kd"):
        blocker = build_distiller(method, _student(), num_classes=3, num_samples=100).cuda_graph_blocker()
        assert blocker is not None and "host-side time and FLOP counts" in blocker, method


def test_fit_refuses_a_step_it_cannot_record_in_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cudagraph, "check_device", lambda device: None)
    distiller = build_distiller("ols", _student(), num_classes=3, num_samples=16)
    batch = (torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,)))
    with pytest.raises(ReffAKDError, match="^cuda_graph cannot record this training step: ols keeps host-side"):
        fit(distiller, FitBatches([batch], [batch]), OptimConfig(epochs=1), tmp_path / "r",
            TrainOptions(speed=SpeedOptions(cuda_graph=True), progress=False, log=lambda _: None),
            checkpoint_meta={})  # fmt: skip
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["train", "softlabels"])
def test_the_cli_refuses_cuda_graph_on_a_cpu_in_one_line_before_writing(tmp_path, capsys, command) -> None:
    from reffakd.cli import main

    out = tmp_path / "out"
    code = main([command, "--out", str(out), "--cuda-graph", "--device", "cpu", "--data-dir", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert err == ["reffakd: error: --cuda-graph needs a CUDA device, not cpu; train without --cuda-graph"]
    assert not out.exists() and not out.with_name("out.partial").exists()


def test_train_refuses_a_method_it_cannot_record_before_writing(tmp_path, capsys, monkeypatch, fake_fmnist) -> None:
    """Past the device check (emulated here), a method whose step does host work is refused, named, with no folder."""
    from reffakd.cli import main

    monkeypatch.setattr(cudagraph, "check_device", lambda device: None)
    out = tmp_path / "out"
    code = main(["train", "--out", str(out), "--method", "ols", "--cuda-graph", "--device", "cpu",
                 "--data-dir", str(fake_fmnist), "--no-download", "--epochs", "1", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1
    assert err[0].startswith("reffakd: error: --cuda-graph cannot record the training step of ols: ols keeps host-side")
    assert err[0].endswith("; train ols without --cuda-graph")
    assert not out.exists() and not out.with_name("out.partial").exists()


def test_the_autoencoder_step_can_be_recorded() -> None:
    from reffakd.models import ConvAutoencoder
    from reffakd.softlabels.autoencoder_task import AutoencoderTask

    assert AutoencoderTask(ConvAutoencoder(1, (8, 8))).cuda_graph_blocker() is None


def test_compare_with_cuda_graph_trains_the_weights_of_an_eager_compare(tmp_path, monkeypatch, fake_fmnist) -> None:
    """compare --cuda-graph end to end, the recording emulated as above: the soft labels' autoencoder and each run
    record their steps (and in-memory batches), record cuda_graph in their speed, and end with the weights of the
    same comparison run eagerly."""
    from safetensors.torch import load_file

    from reffakd.cli import main
    from reffakd.engine.trainer import _Fit

    def compare(out, *extra):
        return main(["compare", "--out", str(out), "--data-dir", str(fake_fmnist), "--no-download", "--val-size", "100",
                     "--no-progress", "--epochs", "2", "--ae-epochs", "1", "--methods", "ce,reffakd", "--seeds", "0",
                     "--device", "cpu", *extra])  # fmt: skip

    assert compare(tmp_path / "eager") == 0
    emulated = EmulatedGraphs([], [])
    original = _Fit._step_graph

    def step_graph(self):  # each training loop's module and optimiser, for the emulation to put back
        emulated.modules.append(self.module)
        emulated.optimizers.append(self.optimizer)
        return original(self)

    monkeypatch.setattr(cudagraph, "check_device", lambda device: None)
    monkeypatch.setattr(_Fit, "_step_graph", step_graph)
    monkeypatch.setattr(cudagraph, "side_stream_call", emulated.side_stream_call)
    monkeypatch.setattr(cudagraph, "record", emulated.record)
    assert compare(tmp_path / "graph", "--cuda-graph") == 0
    assert len(emulated.modules) == 3 and emulated.replays > emulated.captures > 0  # the autoencoder and two runs
    for rel in ("softlabels/autoencoder.safetensors", "runs/ce/seed0/best.safetensors",
                "runs/reffakd/seed0/best.safetensors"):  # fmt: skip
        eager, graph = load_file(tmp_path / "eager" / rel), load_file(tmp_path / "graph" / rel)
        assert eager.keys() == graph.keys() and all(torch.equal(eager[k], graph[k]) for k in eager), rel
    for run in ("ce", "reffakd"):
        summary = (tmp_path / "graph" / "runs" / run / "seed0" / "summary.json").read_text()
        assert '"cuda_graph": true' in summary, run
