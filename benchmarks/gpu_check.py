"""Every CUDA path of reffakd run once, training throughput timed, then the paper's protocol with the time left.

One prepared run for a short GPU window (at most ``--budget`` seconds, 480 by default: 8 minutes), or, with
``--smoke``, the same checks on the CPU on tiny data in well under a minute (``tests/test_gpu_check.py`` runs it,
so the script cannot rot). Each check runs in its own process with its own time limit: one that fails, hangs or
crashes the CUDA context is recorded and the next one runs. ``results.json`` (rewritten after every check) and
``gpu_check.log`` (every command and the tail of its output) go to ``--out`` (default ``$OUT``).

    bash benchmarks/gpu_check.sh                          # on the GPU machine: $OUT/gpu_check/results.json
    bash benchmarks/gpu_check.sh --smoke --out /tmp/gc    # on any CPU, in seconds

Checks: (a) ``reffakd train`` with every registered method on CUDA (teacher methods distil the CE run, soft-label
methods use ``reffakd softlabels`` built on CUDA), ``--amp fp16``, ``--amp bf16``, ``--channels-last``,
``--compile --compile-mode reduce-overhead`` (2 epochs), SIGINT then ``--resume``, ``torchrun
--nproc_per_node=1`` (``reffakd train`` and an NCCL all-reduce); (b) training images/s of LeNet-5 (1x32x32; also
its whole step as one CUDA graph), CIFAR ResNet-18 (3x32x32, 100 classes), the autoencoder, and ResNet-50 forward
passes at 32x32 and 64x64, on synthetic batches in the real shapes, fp32 and bf16 autocast;
(c) with the time left, ``reffakd compare`` of the paper's Fashion-MNIST protocol (ResNet-18 teacher, LeNet-5
students with CE, ReffAKD and KD, 200 epochs, ``--jobs 3``: several runs at once on the one GPU), recording how
far it got. Without ``--data-dir`` the data are synthetic Fashion-MNIST files in the real format and shapes
(60,000 + 10,000 images of 28 x 28; 400 + 100 with ``--smoke``): the paper protocol's accuracies are then
meaningless, its speed is not.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import io
import json
import os
import platform
import signal
import struct
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The checks run this checkout's code, installed or not (the GPU machine has its own Python with no reffakd in it).
sys.path.insert(0, str(ROOT / "src"))
PY = sys.executable
TAIL = 3000  # characters of a check's output kept in results.json


# ----------------------------------------------------------------------------- data


def write_fake_fashion_mnist(folder: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """IDX files (gzip) with Fashion-MNIST's names and shapes; a class-dependent bright band makes them learnable."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        rows = 2 * labels[:, None] + 4 + np.arange(4)[None, :]
        images[np.arange(n)[:, None], rows, 4:24] += 180
        for name, arr in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte", labels)):
            header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
            with gzip.open(folder / f"{name}.gz", "wb", compresslevel=1) as f:
                f.write(header + arr.astype(np.uint8).tobytes())
    return folder


# ----------------------------------------------------------------------------- checks


@dataclass
class Check:
    name: str
    argv: list[str]  # a command line (run with the project's src on PYTHONPATH)
    timeout: float
    expect: int = 0  # the exit status that means success
    skip: str | None = None  # why it does not run in this mode
    after: str | None = None  # a check that must have passed first
    metrics: dict[str, Any] = field(default_factory=dict)


class Runner:
    """Runs checks within one hard deadline, records each in ``results.json`` as it finishes."""

    def __init__(self, out: Path, budget: float, mode: str, device: str, in_process: bool) -> None:
        self.out, self.deadline, self.in_process = out, time.monotonic() + budget, in_process
        self.log_path = out / "gpu_check.log"
        self.results: dict[str, Any] = {
            "mode": mode,
            "device": device,
            "budget_seconds": budget,
            "machine": machine(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "checks": [],
        }
        self.passed: set[str] = set()
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1",
        }

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def log(self, text: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(text + "\n")

    def record(self, name: str, status: str, seconds: float, **extra: Any) -> dict[str, Any]:
        entry = {"name": name, "status": status, "seconds": round(seconds, 2), **extra}
        self.results["checks"].append(entry)
        if status == "ok":
            self.passed.add(name)
        self.save()
        print(f"[gpu_check] {name}: {status} ({seconds:.1f} s)" + (f" {extra.get('reason', '')}"), flush=True)
        return entry

    def save(self) -> None:
        self.results["seconds_left"] = round(self.left(), 1)
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=2) + "\n")
        os.replace(tmp, self.out / "results.json")

    def skip_reason(self, check: Check, minimum: float = 5.0) -> str | None:
        if check.skip:
            return check.skip
        if check.after and check.after not in self.passed:
            return f"needs {check.after}, which did not pass"
        if self.left() < minimum:
            return "time budget spent"
        return None

    def run(self, check: Check) -> dict[str, Any]:
        reason = self.skip_reason(check)
        if reason:
            return self.record(check.name, "skipped", 0.0, reason=reason)
        timeout = max(1.0, min(check.timeout, self.left()))
        self.log(f"\n=== {check.name} (timeout {timeout:.0f} s)\n$ {' '.join(check.argv)}")
        start = time.monotonic()
        code, stdout, stderr = self.execute(check.argv, timeout)
        output = stdout + stderr
        self.log(output[-20000:] + f"\n(exit {code})")
        if code is None:
            return self.record(check.name, "timeout", time.monotonic() - start, reason=f"over {timeout:.0f} s",
                               output_tail=output[-TAIL:])  # fmt: skip
        status = "ok" if code == check.expect else "failed"
        extra: dict[str, Any] = {"exit": code}
        if status != "ok":
            extra["output_tail"] = output[-TAIL:]
        metrics = _json_lines(stdout)
        if metrics:
            extra["metrics"] = metrics
        extra.update(epoch_summary(check.argv))
        return self.record(check.name, status, time.monotonic() - start, **extra)

    def execute(self, argv: list[str], timeout: float) -> tuple[int | None, str, str]:
        """Run a command: its own process, or (``in_process``: ``python -m reffakd``, this script's bench, and the
        worker of a one-process torchrun with the environment torchrun gives it) this process, which imports torch
        once (the smoke mode's seconds). Exit status None: out of time."""
        if self.in_process and in_process_kind(argv) is not None:
            return run_in_process(argv, timeout)
        # Its own session, so that on timeout its whole process group goes (compare's --jobs workers included).
        proc = subprocess.Popen(argv, env=self.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            return None, out, err
        return proc.returncode, out, err

    def run_sigint_resume(self, name: str, argv: list[str], run_dir: Path, epochs: int, timeout: float) -> None:
        """Start a training run, SIGINT it once its first epoch is logged, expect exit 130 and a resume checkpoint,
        then the same command with --resume finishing every epoch."""
        reason = self.skip_reason(Check(name, argv, timeout), minimum=20.0)
        if reason:
            self.record(name, "skipped", 0.0, reason=reason)
            return
        start = time.monotonic()
        self.log(f"\n=== {name}\n$ {' '.join(argv)}  (SIGINT after epoch 1)")
        marker = f"epoch   1/{epochs}"
        if self.in_process:
            code, out, err = run_in_process(argv, min(timeout, self.left()), interrupt_after=marker)
        else:
            code, out, err = self._interrupt_subprocess(argv, marker, min(timeout, self.left()))
        self.log(out[-10000:] + err[-10000:] + f"\n(exit {code})")
        if code != 130 or "resume checkpoint" not in err:
            self.record(name, "failed", time.monotonic() - start, exit=code, output_tail=(out + err)[-TAIL:])
            return
        self.log(f"$ {' '.join(argv)} --resume")
        code, out, err = self.execute([*argv, "--resume"], max(1.0, min(timeout, self.left())))
        self.log(out[-10000:] + err[-10000:] + f"\n(exit {code})")
        metrics = run_dir / "metrics.jsonl"
        done_epochs = [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()] if metrics.is_file() else []
        ok = code == 0 and done_epochs == list(range(1, epochs + 1))
        tail = {} if ok else {"output_tail": (out + err)[-TAIL:]}
        self.record(name, "ok" if ok else "failed", time.monotonic() - start, exit=code, epochs_logged=done_epochs,
                    **tail)  # fmt: skip

    def _interrupt_subprocess(self, argv: list[str], marker: str, timeout: float) -> tuple[int | None, str, str]:
        proc = subprocess.Popen(argv, env=self.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        lines, sent, limit = [], False, time.monotonic() + timeout
        for line in proc.stdout:  # the run ends (130) soon after the signal, closing its output
            lines.append(line)
            if not sent and marker in line:
                proc.send_signal(signal.SIGINT)
                sent = True
            if time.monotonic() > limit:
                break
        try:
            proc.wait(timeout=max(1.0, limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
        return proc.returncode, "".join(lines), proc.stderr.read()


class CheckTimeout(Exception):
    """Raised by SIGALRM inside an in-process check that ran out of time."""


class _Tee(io.StringIO):
    """Captures a check's output; optionally sends this process SIGINT when a marker line is written."""

    def __init__(self, marker: str | None) -> None:
        super().__init__()
        self.marker, self.sent = marker, False

    def write(self, text: str) -> int:
        n = super().write(text)
        if self.marker is not None and not self.sent and self.marker in text:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)  # the training loop's handler stops it after this step
        return n


def in_process_kind(argv: list[str]) -> str | None:
    """Which command of the plan ``argv`` is, when it can run in this process."""
    if argv[1:3] == ["-m", "reffakd"]:
        return "reffakd"
    if argv[1:3] == [str(Path(__file__)), "--bench"]:
        return "bench"
    if argv[1:3] == [str(Path(__file__)), "--loader"]:
        return "loader"
    if "--nproc_per_node=1" in argv and "--torchrun-worker" in argv:
        return "torchrun-worker"
    return None


def torchrun_worker_here(worker_argv: list[str]) -> int:
    """What ``torchrun --standalone --nproc_per_node=1`` runs, in this process with the variables it would set."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port)}  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return torchrun_worker(worker_argv)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def torchrun_worker(worker_argv: list[str]) -> int:
    """The torchrun check's worker: the process group's all-reduce, then ``reffakd WORKER_ARGV``."""
    from reffakd.cli import main as reffakd_main

    probe_process_group()
    return reffakd_main(worker_argv)


def run_in_process(argv: list[str], timeout: float, interrupt_after: str | None = None) -> tuple[int | None, str, str]:
    """``python -m reffakd ARGS`` as ``reffakd.cli.main(ARGS)`` (or the bench, or the torchrun worker) in this
    process, with a SIGALRM time limit."""

    def alarm(signum: int, frame: Any) -> None:
        raise CheckTimeout()

    out, err = _Tee(interrupt_after), io.StringIO()
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    code: int | None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            kind = in_process_kind(argv)
            if kind == "reffakd":
                from reffakd.cli import main as reffakd_main

                code = reffakd_main(argv[3:])
            elif kind == "torchrun-worker":
                code = torchrun_worker_here(argv[argv.index("--torchrun-worker") + 1 :])
            elif kind == "loader":
                input_pipeline("cpu", Path(argv[argv.index("--data-dir") + 1]), smoke=True)
                code = 0
            else:
                bench("cpu", 0.0, smoke=True)
                code = 0
    except CheckTimeout:
        code = None
    except Exception:  # a crash is this check's failure, not the script's
        err.write(traceback.format_exc())
        code = 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue()


def epoch_summary(argv: list[str]) -> dict[str, Any]:
    """Per-epoch seconds and validation top-1 of a training check (its ``--out`` folder's metrics log), so that
    results.json alone compares the speeds of the runs."""
    if "--out" not in argv:
        return {}
    out = Path(argv[argv.index("--out") + 1])
    for metrics in (out / "metrics.jsonl", out.with_name(out.name + ".partial") / "metrics.jsonl"):
        if metrics.is_file():
            rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
            return {
                "epoch_seconds": [round(r["seconds"], 3) for r in rows],
                "val_top1": [r.get("val_top1") for r in rows],
            }
    runs: dict[str, Any] = {}  # a comparison: each run's epochs, their seconds in all, its best validation top-1
    for folder in (out, out.with_name(out.name + ".partial")):
        for metrics in sorted((folder / "runs").glob("*/seed*/metrics.jsonl")) if folder.is_dir() else []:
            rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
            if rows:
                seconds = sorted(r["seconds"] for r in rows)
                runs[str(metrics.parent.relative_to(folder))] = {
                    "epochs": len(rows),
                    "epoch_seconds_total": round(sum(seconds), 2),
                    "epoch_seconds_median": round(seconds[len(seconds) // 2], 4),
                    "best_val_top1": max(r.get("val_top1") or 0.0 for r in rows),
                }
    return {"runs": runs} if runs else {}


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a check's process group (it was started in a session of its own)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _json_lines(stdout: str) -> list[Any]:
    """The ``GPU_CHECK_JSON {...}`` lines a check printed (its measurements)."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("GPU_CHECK_JSON "):
            out.append(json.loads(line[len("GPU_CHECK_JSON ") :]))
    return out


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
    except Exception as exc:  # the record says why, the checks still run
        info["torch_error"] = repr(exc)
    return info


# ----------------------------------------------------------------------------- in-process probes (own processes)


def probe_process_group() -> None:
    """Under torchrun: join the process group (NCCL on CUDA, gloo on CPU), all-reduce through reffakd's helpers."""
    import torch
    import torch.distributed as dist

    from reffakd.softlabels import SimilarityAccumulator

    cuda = torch.cuda.is_available() and os.environ.get("GPU_CHECK_DEVICE", "cuda") == "cuda"
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    t = torch.ones(4, device=device) * (dist.get_rank() + 1)
    dist.all_reduce(t)
    world = dist.get_world_size()
    expected = world * (world + 1) / 2
    acc = SimilarityAccumulator(2, 3, device)
    acc.update(torch.eye(3, device=device)[:2].repeat(2, 1), torch.tensor([0, 1, 0, 1], device=device))
    dist.all_reduce(acc.class_sums)  # what SimilarityAccumulator.all_reduce does with more than one rank
    ok = bool((t == expected).all()) and int(acc.counts.sum()) == 4
    print("GPU_CHECK_JSON " + json.dumps({"backend": dist.get_backend(), "world_size": world, "all_reduce_ok": ok}),
          flush=True)  # fmt: skip
    dist.destroy_process_group()
    if not ok:
        sys.exit(1)


def _step(model: Any, opt: Any, x: Any, y: Any, kind: str, bf16: bool, read_loss: bool = False) -> None:
    """One training step (cross-entropy, or the autoencoder's MSE), or one forward pass without gradients.
    ``read_loss``: read the loss on the host each step, as the training loop did before 2026-11-28 (GPU.md)."""
    import torch
    import torch.nn.functional as F

    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16)
    if kind == "forward":
        model.eval()
        with torch.no_grad(), autocast:
            model(x)
        return
    with autocast:
        out = model(x)
        loss = F.mse_loss(out.float(), x) if kind == "ae" else F.cross_entropy(out.float(), y)
    if read_loss:
        float(loss.detach())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _graphed_step(model: Any, opt: Any, x: Any, y: Any) -> Any:
    """The whole CE training step (forward, loss, backward, SGD update) captured once as a CUDA graph; returns its
    replay. What the step costs without per-kernel launches from Python: the ceiling of any launch-overhead fix
    (``--compile-mode reduce-overhead`` graphs the model's forward and backward, not the loss or the update)."""
    import torch
    import torch.nn.functional as F

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream: cudnn's choices, SGD's momentum buffers
        for _ in range(3):
            _step(model, opt, x, y, "train", False)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)  # the gradients are then allocated in the graph's own memory pool
    with torch.cuda.graph(graph):
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return graph.replay


def bench(device_name: str, seconds: float, smoke: bool) -> None:
    """Training (or forward) images/s of the models the paper uses, on synthetic batches in the real shapes."""
    import torch

    from reffakd.models import ConvAutoencoder, create_model

    device = torch.device(device_name)
    torch.backends.cudnn.benchmark = True
    cases = [  # label, model, input shape, classes, batch, kind, variant
        ("lenet5 train", "lenet5", (1, 32, 32), 10, 128, "train", ""),
        # the cost of a host read of the loss per step (the loop's divergence check until 2026-11-28)
        ("lenet5 train, loss read every step", "lenet5", (1, 32, 32), 10, 128, "train", "read_loss"),
        ("lenet5 train, batch 512", "lenet5", (1, 32, 32), 10, 512, "train", ""),
        ("lenet5 train, whole step as one CUDA graph", "lenet5", (1, 32, 32), 10, 128, "train", "cuda_graph"),
        ("resnet18 train", "resnet18", (3, 32, 32), 100, 128, "train", ""),
        ("resnet18 train, channels_last", "resnet18", (3, 32, 32), 100, 128, "train", "channels_last"),
        ("autoencoder train 1x32x32", "autoencoder", (1, 32, 32), 10, 128, "ae", ""),
        ("autoencoder train 3x64x64", "autoencoder", (3, 64, 64), 200, 128, "ae", ""),
        ("resnet50 forward 32x32", "resnet50", (3, 32, 32), 100, 256, "forward", ""),
        ("resnet50 forward 64x64", "resnet50", (3, 64, 64), 200, 256, "forward", ""),
    ]
    amps = ["none", "bf16"] if device.type == "cuda" else ["none"]
    for label, name, shape, classes, batch, kind, variant in cases:
        if variant == "cuda_graph" and device.type != "cuda":
            continue
        if smoke:
            batch = 2
        memory_format = torch.channels_last if variant == "channels_last" else torch.contiguous_format
        for amp in amps if variant != "cuda_graph" else ["none"]:
            torch.manual_seed(0)
            if name == "autoencoder":
                model = ConvAutoencoder(shape[0], shape[1:]).to(device)
            else:
                model = create_model(name, num_classes=classes, in_channels=shape[0], image_size=shape[1:]).to(device)
            model = model.to(memory_format=memory_format)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            x = torch.rand(batch, *shape, device=device).contiguous(memory_format=memory_format)
            y = torch.randint(0, classes, (batch,), device=device)
            args = (model, opt, x, y, kind, amp == "bf16", variant == "read_loss")
            step = _graphed_step(model, opt, x, y) if variant == "cuda_graph" else functools.partial(_step, *args)
            for _ in range(0 if smoke else 5):  # warm-up (cudnn autotuning)
                step()
            sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
            sync()
            steps, start = 0, time.perf_counter()
            while steps < (1 if smoke else 2) or (time.perf_counter() - start < seconds and not smoke):
                step()
                steps += 1
                if steps % 10 == 0:
                    sync()
            sync()
            elapsed = time.perf_counter() - start
            rate = steps * batch / elapsed
            row = {"case": label, "amp": amp, "batch": batch, "steps": steps, "images_per_second": round(rate, 1)}
            if name == "lenet5":  # the target: a 200-epoch Fashion-MNIST run in at most 60 s
                row["projected_200_epochs_of_55000_seconds"] = round(200 * 55_000 / rate, 1)
            print("GPU_CHECK_JSON " + json.dumps(row), flush=True)


def input_pipeline(device_name: str, data: Path, smoke: bool) -> None:
    """Seconds of the training loop's input alone: one epoch of training batches as ``train_student`` makes them
    (uint8 images on the device, crop and flip, normalised, with indices) and one pass over the validation batches,
    no model. Subtracted from a training epoch, what is left is the step and the loop's bookkeeping."""
    import torch

    from reffakd.data import DataConfig, load_splits, make_batches
    from reffakd.pipeline import EVAL_BATCH_SIZE

    device = torch.device(device_name)
    splits = load_splits(DataConfig(data_dir=str(data), download=False, val_size=100 if smoke else 5000), log=print)
    normalize = (splits.mean, splits.std)
    train = make_batches(splits.train, 32 if smoke else 128, shuffle=True, augment=splits.augment, normalize=normalize,
                         generator=torch.Generator().manual_seed(0), device=device, indexed=True)  # fmt: skip
    val = make_batches(splits.val, EVAL_BATCH_SIZE, normalize=normalize, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for label, batches, passes in (("training batches, one epoch", train, 2), ("validation batches", val, 2)):
        for i in range(passes):  # the first pass includes the copy of the split to the device
            sync()
            start, n = time.perf_counter(), 0
            for _ in batches:
                n += 1
            sync()
            row = {"case": f"input pipeline: {label}", "pass": i + 1, "batches": n,
                   "seconds": round(time.perf_counter() - start, 4)}  # fmt: skip
            print("GPU_CHECK_JSON " + json.dumps(row), flush=True)


# ----------------------------------------------------------------------------- the plan


def plan(args: argparse.Namespace, data: Path, out: Path) -> tuple[list[Check], dict[str, Any]]:
    from reffakd.distillers import DISTILLERS

    smoke, device = args.smoke, args.device
    runs = out / "runs"
    val, batch = ("100", "32") if smoke else ("5000", "128")
    # Figures are CPU work (0.1 to 0.3 s each): drawn by train-ce and softlabels alone (from CUDA tensors), not by
    # the other checks.
    drawn = ["--data-dir", str(data), "--no-download", "--device", device, "--no-progress", "--val-size", val]
    common = [*drawn, "--no-plots"]
    reffakd = [PY, "-m", "reffakd"]
    t_run = 120.0 if smoke else 150.0

    def train(
        name: str,
        method: str,
        *extra: str,
        timeout: float = t_run,
        after: str | None = None,
        plots: bool = False,
        **kw: Any,
    ) -> Check:
        argv = [*reffakd, "train", "--out", str(runs / name), "--method", method, "--epochs", "1",
                "--batch-size", batch, *(drawn if plots else common), *extra]  # fmt: skip
        return Check(name, argv, timeout, after=after, **kw)

    checks = [train("train-ce", "ce", plots=True)]
    checks.append(
        Check(
            "softlabels",
            [
                *reffakd,
                "softlabels",
                "--out",
                str(runs / "soft"),
                "--ae-epochs",
                "1",
                "--ae-batch-size",
                batch,
                *drawn,
            ],
            t_run,
        )
    )
    teacher, soft = str(runs / "train-ce" / "best.safetensors"), str(runs / "soft" / "soft_labels.safetensors")
    for method, info in DISTILLERS.items():
        if method == "ce" or info.source.semi:  # -semi: the same CUDA code as its twin, on a budget's artifact
            continue
        extra: list[str] = []
        after = None
        if info.needs == "teacher":
            extra, after = ["--teacher", teacher], "train-ce"
        elif info.needs == "soft_labels":
            extra, after = ["--soft-labels", soft], "softlabels"
        checks.append(train(f"train-{method}", method, *extra, after=after))
    cpu = "on the CPU (smoke): needs CUDA" if device != "cuda" else None
    checks += [
        train("amp-fp16", "reffakd", "--amp", "fp16", "--soft-labels", soft, after="softlabels", skip=cpu),
        train("amp-bf16", "reffakd", "--amp", "bf16", "--soft-labels", soft, after="softlabels"),
        train("channels-last", "kd", "--channels-last", "--teacher", teacher, after="train-ce"),
        train(  # LeNet-5 as CUDA graphs: the mode meant for the 60 s target; epoch 2 shows the compiled speed
            "compile-reduce-overhead",
            "ce",
            "--compile",
            "--compile-mode",
            "reduce-overhead",
            "--epochs",
            "2",
            timeout=240.0,
            skip="on the CPU (smoke): compiling takes minutes here" if smoke else None,
        ),
    ]
    # The whole step as one CUDA graph per epoch (--cuda-graph), beside the eager loop on the same machine, and the
    # input pipeline alone: where a LeNet-5 epoch's time goes, against the 60 s target for 200 epochs.
    epochs = "2" if smoke else "10"
    graphs = "on the CPU (smoke): CUDA graphs need CUDA" if device != "cuda" else None
    checks += [
        train(f"ce-eager-{epochs}", "ce", "--epochs", epochs),
        train(f"ce-cuda-graph-{epochs}", "ce", "--cuda-graph", "--epochs", epochs, skip=graphs),
        train(
            "reffakd-cuda-graph-bf16",
            "reffakd",
            "--cuda-graph",
            "--amp",
            "bf16",
            "--epochs",
            "3",
            "--soft-labels",
            soft,
            after="softlabels",
            skip=graphs,
        ),  # fmt: skip
        Check(  # the autoencoder's step as one CUDA graph (1.36 s eager epochs on an H200)
            "softlabels-cuda-graph",
            [
                *reffakd,
                "softlabels",
                "--out",
                str(runs / "soft-graph"),
                "--ae-epochs",
                "3",
                "--ae-batch-size",
                batch,
                "--cuda-graph",
                *common,
            ],
            t_run,
            skip=graphs,
        ),  # fmt: skip
        Check(
            "input-pipeline", [PY, str(Path(__file__)), "--loader", "--device", device, "--data-dir", str(data)], t_run
        ),  # fmt: skip
    ]
    # The 60 s target itself: three recordable 200-epoch LeNet-5 runs of the paper's protocol sharing the GPU, each its
    # step and batches as CUDA graphs (the smoke: one 1-epoch eager job, so that the command cannot rot).
    target = [*reffakd, "compare", "--out", str(runs / "target-200"), "--preset", "paper-fashion-mnist",
              "--no-grid", "--methods", "ce,ls,reffakd", "--seeds", "0", "--soft-labels", soft,
              *common]  # fmt: skip
    target += ["--epochs", "1", "--jobs", "1"] if smoke else ["--jobs", "3", "--cuda-graph"]
    checks.append(Check(TARGET, target, t_run if smoke else 300.0, after="softlabels"))
    torchrun = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    checks += [
        Check(  # the launcher, the process group (NCCL on CUDA) and a training run in the one worker
            "torchrun-1",
            [
                *torchrun,
                str(Path(__file__)),
                "--torchrun-worker",
                "train",
                "--out",
                str(runs / "torchrun"),
                "--method",
                "ce",
                "--epochs",
                "1",
                "--batch-size",
                batch,
                *common,
            ],  # fmt: skip
            t_run,
        ),
        Check(
            "bench",
            [PY, str(Path(__file__)), "--bench", "--device", device, *(["--smoke"] if smoke else [])],
            60.0 if smoke else 150.0,
        ),
    ]
    sigint = {
        "argv": [
            *reffakd,
            "train",
            "--out",
            str(runs / "sigint"),
            "--method",
            "ce",
            "--epochs",
            "3",
            "--batch-size",
            batch,
            *common,
        ],  # fmt: skip
        "run_dir": runs / "sigint",  # renamed from sigint.partial when the resumed run finishes
    }
    return checks, sigint


TARGET = "target-200-jobs3"  # after (a) and (b), before (c): it takes what it needs of the time left


def protocol_check(args: argparse.Namespace, data: Path, out: Path) -> Check:
    """(c) The paper's Fashion-MNIST protocol: ResNet-18 teacher, LeNet-5 students (CE, ReffAKD, KD), 200 epochs."""
    argv = [PY, "-m", "reffakd", "compare", "--out", str(out / "runs" / "protocol"), "--preset", "paper-fashion-mnist",
            "--no-grid", "--methods", "ce,reffakd,kd", "--seeds", "0", "--jobs", "3", "--data-dir", str(data),
            "--no-download", "--device", args.device, "--no-progress", "--no-plots"]  # fmt: skip
    if args.smoke:  # one job: a worker process would import torch again (test_sweep.py covers --jobs on CPU)
        argv += ["--epochs", "1", "--teacher-epochs", "1", "--ae-epochs", "1", "--val-size", "100", "--jobs", "1",
                 "--teacher-model", "lenet5"]  # fmt: skip
    return Check("paper-protocol-fashion-mnist", argv, 1e9)


def protocol_progress(folder: Path) -> dict[str, Any]:
    """How far each stage of the comparison got (its metrics logs), finished or cut off by the budget."""
    progress: dict[str, Any] = {}
    for metrics in sorted(folder.rglob("*metrics.jsonl")) if folder.exists() else []:
        rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
        if rows:
            progress[str(metrics.relative_to(folder))] = {
                "epochs": len(rows),
                "seconds_per_epoch": round(sum(r.get("seconds", 0.0) for r in rows) / len(rows), 2),
                "last": {k: rows[-1][k] for k in ("val_top1", "val_mse") if k in rows[-1]},
            }
    return progress


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="on the CPU, tiny data, in seconds (the test suite runs it)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default: $OUT/gpu_check)")
    ap.add_argument("--budget", type=float, default=None, help="hard limit in seconds (default 480; smoke 240)")
    ap.add_argument("--data-dir", type=Path, default=None, help="real Fashion-MNIST IDX files (default: synthetic)")
    ap.add_argument("--no-protocol", action="store_true", help="skip (c), the paper protocol with the time left")
    ap.add_argument("--only", default=None, help="comma-separated check names to run, the others skipped (a short "
                    "window; name the checks they need too, e.g. softlabels)")  # fmt: skip
    ap.add_argument("--device", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--bench", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--loader", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--torchrun-worker", nargs=argparse.REMAINDER, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.device = args.device or ("cpu" if args.smoke else "cuda")
    if args.torchrun_worker is not None:
        return torchrun_worker(args.torchrun_worker)
    if args.bench:
        bench(args.device, 2.0, args.smoke)
        return 0
    if args.loader:
        if args.data_dir is None:
            ap.error("--loader needs --data-dir")
        input_pipeline(args.device, args.data_dir, args.smoke)
        return 0
    out = args.out or (Path(os.environ["OUT"]) / "gpu_check" if os.environ.get("OUT") else None)
    if out is None:
        ap.error("give --out DIR (or set $OUT)")
    if out.is_dir() and any(out.iterdir()):  # before plan(), which imports reffakd and torch: a mistake is told at once
        ap.error(f"--out {out} is not empty: give a new folder")
    only = set(args.only.split(",")) if args.only else None
    known = {c.name for c in plan(args, Path("data"), Path("out"))[0]}
    known |= {"sigint-resume", "paper-protocol-fashion-mnist"}
    if only is not None and not only <= known:  # refused before anything is written
        ap.error(f"--only {','.join(sorted(only - known))}: no such check; allowed: {', '.join(sorted(known))}")
    out.mkdir(parents=True, exist_ok=True)
    budget = args.budget if args.budget is not None else (240.0 if args.smoke else 480.0)
    runner = Runner(out, budget, "smoke" if args.smoke else "gpu", args.device, in_process=args.smoke)
    if args.smoke:
        import torch

        # Tiny models on tiny batches: one thread is as fast, and on a shared machine a second one can make each
        # step many times slower (tests/conftest.py).
        torch.set_num_threads(1)
        runner.env.update(GPU_CHECK_DEVICE="cpu", OMP_NUM_THREADS="1")
        os.environ["GPU_CHECK_DEVICE"] = "cpu"  # the in-process torchrun worker's process group: gloo
    start = time.monotonic()
    if args.data_dir is not None:
        data, runner.results["data"] = args.data_dir, f"real: {args.data_dir}"
    else:
        n_train, n_test = (400, 100) if args.smoke else (60_000, 10_000)
        data = write_fake_fashion_mnist(out / "data", n_train, n_test)
        runner.results["data"] = f"synthetic Fashion-MNIST files, {n_train} + {n_test} images of 28 x 28"
    runner.record("data", "ok", time.monotonic() - start)
    checks, sigint = plan(args, data, out)
    for c in checks:
        if only is not None and c.name not in only:
            c.skip = "not in --only"
    bench_check = checks.pop(checks.index(next(c for c in checks if c.name == "bench")))  # (b) after (a)
    target_check = checks.pop(checks.index(next(c for c in checks if c.name == TARGET)))  # then the 60 s target
    for check in checks:
        runner.run(check)
    if only is None or "sigint-resume" in only:
        runner.run_sigint_resume("sigint-resume", sigint["argv"], sigint["run_dir"], 3, 150.0)
    runner.run(bench_check)
    runner.run(target_check)
    if args.no_protocol or (only is not None and "paper-protocol-fashion-mnist" not in only):
        runner.record("paper-protocol-fashion-mnist", "skipped", 0.0, reason="--no-protocol or not in --only")
    else:
        check = protocol_check(args, data, out)
        entry = runner.run(check)
        entry["progress"] = protocol_progress(out / "runs" / "protocol")
        entry["progress"].update(protocol_progress(out / "runs" / "protocol.partial"))
        if entry["status"] == "timeout":
            entry["status"] = "partial"
            entry["reason"] = "the time budget ended it; progress shows how far each stage got"
        runner.save()
    failed = [c["name"] for c in runner.results["checks"] if c["status"] in ("failed", "timeout")]
    runner.results["failed"] = failed
    runner.results["seconds"] = round(time.monotonic() - start, 1)
    runner.save()
    print(f"[gpu_check] done in {runner.results['seconds']} s; failed: {', '.join(failed) or 'none'}; {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
