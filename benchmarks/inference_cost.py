"""Inference cost of the Fashion-MNIST students beside their teachers: the table in docs/RESULTS.md.

Each subject is measured ``--repeats`` times by ``reffakd.deploy.measure_subject`` (the code behind
``reffakd bench``), interleaved so that every subject sees the same machine load; each timing cell is
the median over the repeats. Checkpoints come from ``reffakd train`` runs; ``--model`` adds an
architecture at its initial weights (its cost does not depend on the weights).

    python benchmarks/inference_cost.py --threads 1 --repeats 3 \\
        --checkpoint runs/fmnist-lenet5-ce/best.safetensors --checkpoint runs/fmnist-lenet5-reffakd/best.safetensors \\
        --checkpoint runs/fmnist-resnet8-ce/best.safetensors --model resnet18 \\
        --out benchmarks/results/inference_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from reffakd.deploy import bench_table, measure_subject, subjects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", default=[])
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--throughput-runs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    found = subjects(args.checkpoint, args.model, None, None)
    rounds = []
    for r in range(args.repeats):
        rounds.append([measure_subject(s, torch.device("cpu"), latency_runs=args.latency_runs,
                                       throughput_runs=args.throughput_runs, batch_size=args.batch_size)
                       for s in found])  # fmt: skip
        print(f"round {r + 1}/{args.repeats} done", flush=True)
    records = []
    for i in range(len(found)):
        record = dict(rounds[0][i])
        record["runtimes"] = {
            runtime: {
                key: statistics.median(rnd[i]["runtimes"][runtime][key] for rnd in rounds)
                for key in ("latency_ms_median", "latency_ms_p95", "throughput_images_per_s")
            }
            for runtime in rounds[0][i]["runtimes"]
        }
        record["rounds"] = [rnd[i]["runtimes"] for rnd in rounds]
        records.append(record)
    table = bench_table(records, args.batch_size)
    print(table)
    machine = {"machine": platform.machine(), "python": platform.python_version(), "torch": torch.__version__,
               "threads": args.threads, "cpus": os.cpu_count()}  # fmt: skip
    args.out.write_text(json.dumps({"machine": machine, "args": vars(args) | {"out": str(args.out)},
                                    "models": records, "table": table}, indent=2, default=str) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
