"""Training throughput (images/s) under each speed option of ``fit``: LeNet-5 and resnet20, 1x32x32 inputs, batch 128.

Per model and configuration (baseline, channels_last, torch.compile, bf16 autocast, all combined): a
fresh model and SGD as ``fit`` builds them, the training step ``fit`` runs (``SpeedOptions``' input
layout, autocast and scaler, a CE distiller), ``--warmup`` steps (compilation happens there; its time
is reported apart, as it lands in a real run's first epoch), then ``--rounds`` rounds of ``--steps``
timed steps (default: 40 for LeNet-5, 5 for resnet20, about equal time on a CPU), configurations
interleaved so that all see the same machine load; the best round counts. A configuration that
cannot run here (torch.compile without a compiler...) is recorded with its one-line reason.

    OMP_NUM_THREADS=2 python benchmarks/speed_options.py --out benchmarks/results/speed_options.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reffakd.distillers import build_distiller
from reffakd.engine import OptimConfig, SpeedOptions, build_optimizer
from reffakd.errors import ReffAKDError
from reffakd.models import create_model

DEFAULT_STEPS = {"lenet5": 40, "resnet20": 5}
CONFIGS = {
    "baseline": SpeedOptions(),
    "channels_last": SpeedOptions(channels_last=True),
    "compile": SpeedOptions(compile=True),
    "bf16": SpeedOptions(amp="bf16"),
    "all": SpeedOptions(amp="bf16", channels_last=True, compile=True),
}


def make_step(model_name: str, speed: SpeedOptions, device: torch.device, batch: int) -> Callable[[], None]:
    torch.manual_seed(0)
    student = create_model(model_name, num_classes=10, in_channels=1, image_size=(32, 32)).to(device)
    distiller = build_distiller("ce", student, num_classes=10).to(device)
    optimizer = build_optimizer(student.parameters(), OptimConfig())
    scaler = speed.grad_scaler(device)
    speed.prepare_model(student)
    distiller.train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)

    def step() -> None:
        images = speed.prepare_input(x)
        with speed.autocast(device):
            _, losses = distiller.forward_train(images, y, 1)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        float(loss.detach())  # fit reads the loss every step: a device sync

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def bench_model(
    model_name: str, device: torch.device, args: argparse.Namespace, n_steps: int, log: Callable[[str], None]
) -> dict[str, Any]:
    steps: dict[str, Callable[[], None]] = {}
    out: dict[str, Any] = {}
    for name, speed in CONFIGS.items():
        try:
            speed.validate(device)
            step = make_step(model_name, speed, device, args.batch_size)
            start = time.perf_counter()
            for _ in range(args.warmup):
                step()
            _sync(device)
            out[name] = {"warmup_seconds": time.perf_counter() - start, "images_per_second": 0.0}
            steps[name] = step
            log(f"{model_name} {name}: warm-up {out[name]['warmup_seconds']:.1f}s")
        except (ReffAKDError, Exception) as exc:  # a configuration this machine cannot run
            out[name] = {"error": _reason(exc)}
            log(f"{model_name} {name}: cannot run ({out[name]['error']})")
    for r in range(args.rounds):
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(n_steps):
                step()
            _sync(device)
            rate = n_steps * args.batch_size / (time.perf_counter() - start)
            out[name]["images_per_second"] = max(out[name]["images_per_second"], rate)
            out[name].setdefault("rounds", []).append(rate)
        log(
            f"{model_name} round {r + 1}/{args.rounds}: "
            + ", ".join(f"{n} {out[n]['rounds'][-1]:.0f}/s" for n in steps)
        )
    base = out["baseline"].get("images_per_second")
    for name in steps:
        out[name]["speedup"] = out[name]["images_per_second"] / base if base else None
    return out


def markdown(results: dict[str, dict[str, Any]], machine: str) -> str:
    lines = [
        f"Training images/s, batch {next(iter(results.values()))['batch_size']}, 1x32x32 ({machine})",
        "",
        "| model | " + " | ".join(CONFIGS) + " |",
        "|---|" + "---:|" * len(CONFIGS),
    ]
    for model, res in results.items():
        cells = []
        for name in CONFIGS:
            r = res["configs"][name]
            if "error" in r:
                cells.append("fails")
            else:
                cells.append(f"{r['images_per_second']:.0f} ({r['speedup']:.2f}x)")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    errors = sorted({r["error"] for res in results.values() for r in res["configs"].values() if "error" in r})
    lines += [f"\nfails: {e}" for e in errors]
    warm = [
        f"{m} {n} {r['warmup_seconds']:.1f}s"
        for m, res in results.items()
        for n, r in res["configs"].items()
        if "warmup_seconds" in r and n in ("compile", "all")
    ]
    if warm:
        lines.append("\nwarm-up incl. compilation (first-epoch overhead): " + ", ".join(warm))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="JSON results")
    ap.add_argument("--models", nargs="+", default=["lenet5", "resnet20"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per configuration (compilation happens here)")
    ap.add_argument(
        "--steps", type=int, default=None, help="timed steps per round (default: per model, see above; 20 for others)"
    )
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    ) + f", torch {torch.__version__}"
    results = {}
    for model in args.models:
        n_steps = args.steps or DEFAULT_STEPS.get(model, 20)
        configs = bench_model(model, device, args, n_steps, lambda line: print(line, flush=True))
        results[model] = {
            "batch_size": args.batch_size,
            "steps": n_steps,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "configs": configs,
        }
    table = markdown(results, machine)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"machine": machine, "device": str(device), "results": results, "table": table}, indent=2) + "\n"
    )
    print("\n" + table)


if __name__ == "__main__":
    main()
