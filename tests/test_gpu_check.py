"""benchmarks/gpu_check.sh --smoke: the GPU window's one prepared script, run on the CPU so that it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_passes_every_check_it_can_run_on_a_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gc"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    status = {c["name"]: c["status"] for c in results["checks"]}
    assert done.returncode == 0, (status, done.stdout[-3000:], done.stderr[-3000:])
    skipped = {name for name, s in status.items() if s == "skipped"}
    # CUDA-only or minutes on a CPU: everything else ran
    assert skipped == {
        "amp-fp16", "compile-reduce-overhead", "ce-cuda-graph-2", "reffakd-cuda-graph-bf16", "softlabels-cuda-graph"
    }  # fmt: skip
    assert all(s == "ok" for name, s in status.items() if name not in skipped)
    for method in ("ce", "ls", "tfkd-reg", "tfkd-self", "kd", "dkd", "dkd-aesl", "reffakd"):
        assert status[f"train-{method}"] == "ok"
    checks = {c["name"]: c for c in results["checks"]}
    assert checks["sigint-resume"]["epochs_logged"] == [1, 2, 3]
    assert checks["torchrun-1"]["metrics"][0] == {"backend": "gloo", "world_size": 1, "all_reduce_ok": True}
    assert {m["case"] for m in checks["bench"]["metrics"]} >= {"lenet5 train", "resnet50 forward 64x64"}
    assert (out / "runs" / "protocol" / "results.md").is_file()
    assert "=== train-reffakd" in (out / "gpu_check.log").read_text()
    assert len(checks["ce-eager-2"]["epoch_seconds"]) == 2 and len(checks["ce-eager-2"]["val_top1"]) == 2
    assert set(checks["target-200-jobs3"]["runs"]) == {"runs/ce/seed0", "runs/ls/seed0", "runs/reffakd/seed0"}
    assert all(run["epochs"] == 1 for run in checks["target-200-jobs3"]["runs"].values())
    pipeline = {(m["case"], m["pass"]) for m in checks["input-pipeline"]["metrics"]}
    assert ("input pipeline: training batches, one epoch", 2) in pipeline


def test_gpu_check_only_runs_the_named_checks_and_refuses_unknown_names(tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--no-protocol"]
    done = subprocess.run([*script, "--out", str(tmp_path / "a"), "--only", "input-pipeline"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    status = {c["name"]: c["status"] for c in json.loads((tmp_path / "a" / "results.json").read_text())["checks"]}
    assert status.pop("input-pipeline") == "ok" and status.pop("data") == "ok"
    assert set(status.values()) == {"skipped"} and "sigint-resume" not in status
    done = subprocess.run([*script, "--out", str(tmp_path / "b"), "--only", "train-ce,bogus"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "--only bogus: no such check; allowed:" in done.stderr
    assert not (tmp_path / "b").exists()


def test_gpu_check_refuses_a_folder_in_use(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("x")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "is not empty" in done.stderr
