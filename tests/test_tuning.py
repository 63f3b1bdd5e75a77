"""Equal tuning: the same number of trials per method at a short budget, chosen on validation only."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from reffakd.compare import run_compare
from reffakd.data import DataConfig, load_splits
from reffakd.engine import TrainOptions
from reffakd.errors import ReffAKDError
from reffakd.runner import Shared, run_one
from reffakd.spec import RunSpec
from reffakd.tuning import choose, item_path

DATA = {"val_size": 100, "download": False}
STUDENT = {"model": "lenet5", "epochs": 1, "batch_size": 64}


def _spec(data_dir: Path, **over) -> RunSpec:
    d = {"methods": ["ce", "ls"], "seeds": [0, 1], "data": {**DATA, "data_dir": str(data_dir)}, "student": STUDENT}
    d["tune"] = {"trials": 2, "epochs": 1, "seeds": [0], "params": {"lr": [0.05, 0.2]}}
    return RunSpec.from_dict({**d, **over}, "spec")


def test_every_method_gets_the_same_trials_sampled_reproducibly(fake_fmnist: Path) -> None:
    spec = _spec(fake_fmnist, methods=["ce", "ls", "kd", "tfkd-self"])
    assert spec.tuning_points("ce") == [{"lr": 0.05}, {"lr": 0.2}]  # ce is tuned too, over the shared axis
    ls = spec.tuning_points("ls")
    assert len(ls) == 2 and all(set(p) == {"epsilon", "lr"} for p in ls)  # 5 x 2 points, 2 sampled
    assert ls == _spec(fake_fmnist, methods=["ce", "ls", "kd", "tfkd-self"]).tuning_points("ls")
    other_seed = _spec(fake_fmnist, tune={"trials": 2, "epochs": 1, "params": {"lr": [0.05, 0.2]}, "seed": 1})
    assert other_seed.tuning_points("ls") != ls
    assert len(spec.tuning_points("kd")) == 2 and spec.tuning_points("tfkd-self") == []
    big = _spec(fake_fmnist, tune={"trials": 100, "epochs": 1})
    assert len(big.tuning_points("ls")) == 5 and big.tuning_points("ce") == []  # a smaller grid runs whole
    items = spec.tuning_items()
    assert {i.stage for i in items} == {"tuning"} and all(dict(i.point)["epochs"] == 1 for i in items)


@pytest.mark.parametrize(
    "tune,fragment",
    [
        ({"trials": 0, "epochs": 1}, "tune trials 0 is out of range"),
        ({"epochs": 1}, "tune must be an object with trials and epochs"),
        ({"trials": 2, "epochs": 1, "params": {"alpha": [0.1]}}, "tune params key 'alpha' cannot vary"),
        ({"trials": 2, "epochs": 1, "params": {"lr": [-1.0]}}, "tuning trial ce[lr=-1]"),
        ({"trials": 2, "epochs": 1, "seeds": []}, "tune seeds must be a non-empty list"),
    ],
)
def test_bad_tune_sections_are_one_line(fake_fmnist: Path, tune: dict, fragment: str) -> None:
    with pytest.raises(ReffAKDError) as info:
        _spec(fake_fmnist, tune=tune)
    assert fragment in str(info.value)
    with pytest.raises(ReffAKDError, match="tune and grid exclude each other"):
        _spec(fake_fmnist, grid={"methods": ["ls"], "params": {"epsilon": [0.1, 0.2]}})


class PoisonSplit:
    """A test split that fails on any use: what a tuning trial must never touch."""

    def __getattr__(self, name: str):
        raise AssertionError(f"a tuning trial read the test split ({name})")

    def __len__(self) -> int:
        raise AssertionError("a tuning trial read the test split (len)")


def test_tuning_trials_never_read_the_test_split(tmp_path: Path, fake_fmnist: Path) -> None:
    spec = _spec(fake_fmnist)
    splits = load_splits(spec.data, log=lambda s: None)
    poisoned = replace(splits, test=PoisonSplit())
    quiet = TrainOptions(torch.device("cpu"), spec.speed, progress=False, log=lambda s: None)
    for item in spec.tuning_items():
        run_dir = item_path(tmp_path, item)
        run_dir.mkdir(parents=True)
        summary = run_one(spec, item, run_dir, poisoned, Shared(None, None), quiet)
        assert summary["test_best"] is None and summary["trial"] is True
    assert set(choose(tmp_path, spec)) == {"ce", "ls"}
    # A final run does read the test split: the poison is live.
    with pytest.raises(AssertionError, match="read the test split"):
        final = spec.run_items()[0]
        run_one(spec, final, tmp_path / "final", poisoned, Shared(None, None), quiet)


def test_compare_tunes_then_runs_the_choice_over_the_seeds(tmp_path: Path, fake_fmnist: Path) -> None:
    spec = _spec(fake_fmnist)
    splits = load_splits(DataConfig(data_dir=str(fake_fmnist), **DATA), log=lambda s: None)
    out = tmp_path / "cmp"
    md = run_compare(spec, out, splits, TrainOptions(progress=False, log=lambda s: None))
    trials = sorted(p.parent.name for p in (out / "tuning").glob("*/seed0/summary.json"))
    assert len(trials) == 4 and (out / "tuning.md").is_file() and (out / "tuning.csv").is_file()
    chosen = choose(out, spec)
    for method in ("ce", "ls"):
        # The choice is the trial with the best validation top-1, read independently here.
        vals = {}
        for path in (out / "tuning").glob(f"{method}_*/seed0/summary.json"):
            s = json.loads(path.read_text())
            vals[tuple(sorted(s["grid"].items()))] = s["best_val_top1"]
        best = max(vals.values())
        assert vals[tuple(sorted({**chosen[method], "epochs": 1}.items()))] == best
        for seed in (0, 1):
            s = json.loads((out / "runs" / method / f"seed{seed}" / "summary.json").read_text())
            assert s["tuned"] == chosen[method] and s["test_best"] is not None
    assert "Settings chosen by equal tuning" in md and "Paired difference to ce" in md
    # Resuming trains nothing again.
    logs: list[str] = []
    run_compare(spec, out, splits, TrainOptions(progress=False, log=logs.append))
    assert sum(line.startswith("skip ") for line in logs) == 4 + 4
