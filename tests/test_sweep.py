"""`reffakd sweep`: compare's machinery over a grid of any method parameter or optimiser key, resumable, parallel."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tree_digest
from reffakd.cli import main, parse_command
from reffakd.runconfig import compare_spec

GRID = {"methods": ["reffakd"], "params": {"alpha": [0.3, 0.7], "lr": [0.05, 0.1]}}
FOLDERS = ["reffakd_alpha0.3_lr0.05", "reffakd_alpha0.3_lr0.1", "reffakd_alpha0.7_lr0.05", "reffakd_alpha0.7_lr0.1"]
REPO = Path(__file__).resolve().parents[1]


def sweep_config(folder: Path, data: Path, **extra: object) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "methods": ["reffakd"],
                "seeds": [0],
                "grid": GRID,
                "student": {"batch_size": 64},
                "epochs": 1,
                "ae_epochs": 1,
                "data_dir": str(data),
                "no_download": True,
                "val_size": 100,
                "no_progress": True,
                "device": "cpu",
                **extra,
            },
            sort_keys=False,
        )
    )
    return path


def table(out: Path) -> list[dict[str, str]]:
    with open(out / "sweep.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, fake_fmnist: Path) -> Path:
    base = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REFFAKD_CACHE", str(base / "cache"))
        assert main(["sweep", "--out", str(base / "out"), "--config", str(sweep_config(base, fake_fmnist))]) == 0
    return base / "out"


def test_sweep_runs_every_point_and_writes_the_sorted_table(swept: Path) -> None:
    assert sorted(p.name for p in (swept / "runs").iterdir()) == FOLDERS
    for folder in FOLDERS:
        s = json.loads((swept / "runs" / folder / "seed0" / "summary.json").read_text())
        assert s["variant"] == f"reffakd[alpha={s['grid']['alpha']:g},lr={s['grid']['lr']:g}]"
        assert (
            s["config"]["alpha"] == s["grid"]["alpha"] and s["config"]["optim"]["lr"] == s["grid"]["lr"]
        )  # both kinds of key applied
    assert len(list((swept / "softlabels").glob("soft_labels.safetensors"))) == 1  # one artifact for every trial
    rows = table(swept)
    assert [float(r["val_top1"]) for r in rows] == sorted((float(r["val_top1"]) for r in rows), reverse=True)
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"] and {r["alpha"] for r in rows} == {"0.3", "0.7"}
    chosen = [r for r in rows if r["chosen"] == "True"]
    assert chosen == [rows[0]]  # the best mean validation top-1 (ties: the first in grid order)
    md = (swept / "sweep.md").read_text()
    assert (
        f"Chosen by validation for reffakd: {rows[0]['variant']} "
        f"(alpha {float(rows[0]['alpha']):g}, lr {float(rows[0]['lr']):g}): "
        f"val top-1 {float(rows[0]['val_top1']):.2f}, test top-1 {float(rows[0]['test_top1']):.2f} "
        "(4 settings, 1 seed(s) each)."
    ) in md
    assert f"| 1    | **{rows[0]['variant']}**" in md
    saved = yaml.safe_load((swept / "config.yaml").read_text())
    assert (
        saved["grid"] == GRID and saved["student"]["epochs"] == 1 and saved["soft_labels"]["autoencoder"]["epochs"] == 1
    )
    assert json.loads((swept / "spec.json").read_text())["grid"] == GRID


def test_killed_sweep_resumes_without_repeating_finished_trials(
    tmp_path: Path, fake_fmnist: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import reffakd.runner as runner

    out, cfg = tmp_path / "out", sweep_config(tmp_path, fake_fmnist)
    real, calls = runner.train_student, []

    def dies_on_third(*args, **kwargs):
        calls.append(kwargs["summary"]["name"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "train_student", dies_on_third)
    assert main(["sweep", "--out", str(out), "--config", str(cfg)]) == 130
    finished = sorted(p.parent.parent.name for p in (out / "runs").glob("*/seed0/summary.json"))
    # the third trial stopped before its first resume checkpoint: its folder held nothing to resume and is gone
    assert finished == FOLDERS[:2] and not (out / "runs" / FOLDERS[2] / "seed0.partial").exists()
    assert len(table(out)) == 2  # the table so far
    before = tree_digest(out / "runs")
    monkeypatch.setattr(runner, "train_student", real)
    capsys.readouterr()
    assert main(["sweep", "--out", str(out), "--config", str(cfg)]) == 0
    log = capsys.readouterr().out
    assert (
        "skip reffakd[alpha=0.3,lr=0.05] seed 0: finished" in log
        and "skip reffakd[alpha=0.3,lr=0.1] seed 0: finished" in log
    )
    assert "train reffakd[alpha=0.3,lr=0.05]" not in log and "train reffakd[alpha=0.7,lr=0.05]-s0" in log
    after = tree_digest(out / "runs")
    assert all(after[k] == v for k, v in before.items() if k.split("/")[0] in FOLDERS[:2])  # finished trials untouched
    assert len(table(out)) == 4 and not list((out / "runs").glob("*/*.partial"))


def test_jobs_two_gives_the_same_table_as_jobs_one(
    swept: Path, tmp_path: Path, fake_fmnist: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["sweep", "--out", str(out), "--config", str(sweep_config(tmp_path, fake_fmnist, jobs=2))]) == 0
    captured = capfd.readouterr().out
    assert "jobs: 2 worker processes, 1 CPU thread(s) each, on cpu" in captured
    assert (
        "[job " in captured and "] train reffakd[" in captured
    )  # trained in the workers (which one trains what is up to timing)
    drop = lambda rows: [{k: v for k, v in r.items() if k != "student_seconds"} for r in rows]  # noqa: E731
    assert drop(table(out)) == drop(table(swept))
    assert not list(out.rglob("*.png"))  # the workers took the parent's switch: figures off (conftest)


def test_sweep_refusals_are_one_line_and_write_nothing(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    cases = [
        (["--methods", "reffakd"], "sweep needs a grid"),
        (
            ["--methods", "ce", "--vary", "lr=0.1,0.2", "--spec", str(sweep_config(tmp_path, fake_fmnist))],
            "unknown key 'epochs'",
        ),  # a spec file holds spec sections only; options go in --config
        (["--methods", "ce", "--vary", "epochs=1,2.5"], "grid epochs must be a non-empty list of distinct integers"),
        (
            ["--methods", "reffakd", "--vary", "temperature=0,4"],
            "grid point reffakd[temperature=0]: temperature 0 is out of range",
        ),
        (["--methods", "ce", "--vary", "lrr=0.1"], "grid key 'lrr' cannot vary (did you mean 'lr'?)"),
        (["--methods", "ce", "--vary", "alpha"], "must be KEY=V1,V2"),
        (["--methods", "ce", "--jobs", "0", "--vary", "lr=0.1"], "--jobs 0 is out of range"),
    ]
    for extra, fragment in cases:
        try:
            rc = main(["sweep", "--out", str(out), "--data-dir", str(fake_fmnist), *extra])
        except SystemExit as exc:  # argparse's own check of --vary's text
            rc = exc.code
        err = capsys.readouterr().err.strip().splitlines()
        assert rc in (1, 2) and fragment in err[-1], (extra, err)
        assert not out.exists()


def test_variant_names_and_one_grid_syntax() -> None:
    from reffakd.spec import RunSpec, folder_name, variant_name

    assert variant_name("reffakd", {"alpha": 0.5, "lr": 0.05}) == "reffakd[alpha=0.5,lr=0.05]"
    assert folder_name("dkd[beta=8,schedule=cosine,weight_decay=1e-05]") == "dkd_beta8_schedulecosine_weight_decay1e-05"
    with pytest.raises(Exception, match="exactly the keys methods, params"):  # the older {alpha, temperature} form
        RunSpec.from_dict(
            {
                "methods": ["reffakd"],
                "seeds": [0],
                "grid": {"methods": ["reffakd"], "alpha": [0.1], "temperature": [4]},
            },
            "s",
        )
    spec = RunSpec.from_dict(
        {
            "methods": ["dkd-aesl"],
            "seeds": [0],
            "student": {"milestones": [5, 8], "epochs": 10},
            "grid": {"methods": ["dkd-aesl"], "params": {"beta": [8], "epochs": [2], "schedule": ["cosine"]}},
        },
        "s",
    )
    cfg = spec.student_config("dkd-aesl", 0, point=spec.run_items()[0].params)
    assert (cfg.optim.epochs, cfg.optim.milestones, cfg.optim.schedule, cfg.method_params()["beta"]) == (
        2,
        None,
        "cosine",
        8,
    )


def test_worker_devices_one_gpu_each_when_several(monkeypatch: pytest.MonkeyPatch) -> None:
    from reffakd.pool import worker_devices

    assert worker_devices(torch.device("cpu"), 2) == ["cpu", "cpu"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert worker_devices(torch.device("cuda"), 4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert worker_devices(torch.device("cuda:1"), 2) == ["cuda:1", "cuda:1"]  # a named GPU is kept


@pytest.mark.parametrize(
    "name,methods,variants,epochs,seeds",
    [("small-grid-fashion-mnist", ["reffakd"], 4, 2, [0]), ("paper-fashion-mnist", None, 36, 200, [0, 1, 2])],
)
def test_ready_grid_recipes(
    name: str,
    methods: list[str] | None,
    variants: int,
    epochs: int,
    seeds: list[int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from reffakd.recipes import _path

    path = _path(name)
    assert main(["config", "show", "sweep", "--config", str(path)]) == 0  # usable as a config file
    shown = yaml.safe_load(capsys.readouterr().out)
    spec = compare_spec(parse_command(["sweep", "--out", "x", "--spec", str(path)]))  # and as a spec file
    assert {k: shown[k] for k in spec.to_dict()} == json.loads(json.dumps(spec.to_dict()))
    assert spec.to_dict() == compare_spec(parse_command(["sweep", "--out", "x", "--preset", name])).to_dict()
    items = [i for i in spec.run_items() if i.seed == seeds[0] and i.method == "reffakd"]
    assert len(items) == variants and spec.seeds == seeds and (methods is None or spec.methods == methods)
    assert spec.student_config("reffakd", 0, point=items[0].params).optim.epochs == epochs
