"""YAML config files: the typed configuration tree is the schema of flags and keys alike, flags win over the file,
the resolved config is saved and shown."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from conftest import tree_digest
from reffakd.cli import main, parse_command
from reffakd.runconfig import COMMANDS, CONFIG_COMMANDS, Group, command_options
from reffakd.settings import opt


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def train_config(data: Path, out: Path, **extra: object) -> dict:
    return {
        "out": str(out),
        "method": "ce",
        "data-dir": str(data),
        "no_download": True,
        "val_size": 100,
        "no_progress": True,
        "device": "cpu",
        "epochs": 2,
        "batch_size": 64,
        **extra,
    }


def body(text: str) -> dict:
    return yaml.safe_load(text)


def one_error_line(err: str, fragment: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reffakd: error: "), err
    assert fragment in lines[0], err
    return lines[0]


# --------------------------------------------------------------------------- a config drives a run


def test_config_drives_a_run_a_flag_overrides_it_and_the_saved_config_round_trips(
    tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    cfg = write_yaml(tmp_path / "train.yaml", train_config(fake_fmnist, out, lr=0.05))
    assert main(["train", "--config", str(cfg), "--epochs", "1"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # the flag won over epochs: 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["optim"]["batch_size"] == 64 and summary["config"]["optim"]["lr"] == 0.05  # from the file
    assert not (out / "config.json").exists()
    saved_text = (out / "config.yaml").read_text()
    assert saved_text.startswith("# reffakd ") and "--epochs 1" in saved_text.splitlines()[0]
    saved = body(saved_text)
    assert (saved["epochs"], saved["batch_size"], saved["lr"], saved["val_size"], saved["out"]) == (
        1,
        64,
        0.05,
        100,
        str(out),
    )
    assert saved["milestones"] is None and saved["alpha"] is None
    # Round trip: the saved file resolves to itself, and running with it gives the same config (but --out).
    capsys.readouterr()
    assert main(["config", "show", "train", "--config", str(out / "config.yaml")]) == 0
    assert body(capsys.readouterr().out) == saved
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "config.yaml"), "--out", str(again)]) == 0
    assert body((again / "config.yaml").read_text()) == {**saved, "out": str(again)}
    assert json.loads((again / "summary.json").read_text())["best_val_top1"] == summary["best_val_top1"]


def test_a_flag_equal_to_its_default_still_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Explicit flags are found by parsing again with suppressed defaults, not by comparing with the default."""
    cfg = write_yaml(tmp_path / "c.yaml", {"epochs": 5, "schedule": "cosine", "no_progress": True})
    assert main(["config", "show", "train", "--config", str(cfg), "--epochs", "30", "--schedule", "multistep"]) == 0
    shown = body(capsys.readouterr().out)
    assert (shown["epochs"], shown["schedule"], shown["no_progress"]) == (30, "multistep", True)


def test_exclusive_options_stay_exclusive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_yaml(tmp_path / "c.yaml", {"soft_temperature": 2.0})
    assert main(["config", "show", "softlabels", "--config", str(cfg), "--target-own-prob", "0.3"]) == 0
    shown = body(capsys.readouterr().out)
    assert (shown["soft_temperature"], shown["target_own_prob"]) == (None, 0.3)  # the command line chose the other one
    write_yaml(cfg, {"soft_temperature": 2.0, "target_own_prob": 0.3})
    assert main(["config", "show", "softlabels", "--config", str(cfg)]) == 1
    one_error_line(capsys.readouterr().err, "exclude each other")


def test_every_option_is_a_key_and_a_new_field_is_one_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for command in CONFIG_COMMANDS:
        keys = set(command_options(command))
        with pytest.raises(SystemExit):
            main([command, "--help"])
        help_text = capsys.readouterr().out
        assert all(o.flag in help_text for o in command_options(command).values()), command
        grid = ["--methods", "ce", "--vary", "lr=0.1"] if command == "sweep" else []
        assert main(["config", "show", command, *grid]) == 0
        shown = body(capsys.readouterr().out)
        if command in ("compare", "sweep"):  # the spec's options are shown folded into its sections
            keys = {k for k in keys if k in ("out", "preset", "jobs", "device", "no_progress")}
        assert keys <= set(shown), command

    @dataclasses.dataclass
    class Extra:
        brand_new: int | None = opt(None, "a new option", choices=(1, 2))

    monkeypatch.setitem(COMMANDS, "train", (COMMANDS["train"][0], [*COMMANDS["train"][1], Group("extra", "x", Extra)]))
    assert parse_command(["train", "--brand-new", "2"], require=False).values["brand_new"] == 2
    cfg = write_yaml(tmp_path / "c.yaml", {"brand_new": 2})
    assert parse_command(["train", "--config", str(cfg)], require=False).group("extra").brand_new == 2
    write_yaml(cfg, {"brand_new": 3})
    with pytest.raises(Exception, match="key 'brand_new': invalid choice 3"):
        parse_command(["train", "--config", str(cfg)], require=False)


# ------------------------------------------------------------------------- mistakes: one line, exit 1, nothing written

BAD_CONFIGS = {
    "unknown-key": ("epoch: 3\n", "config {path}: unknown key 'epoch' (did you mean 'epochs'?); allowed: out, "),
    "bad-int": ("epochs: ten\n", "config {path}: key 'epochs': invalid int value 'ten'"),
    "float-for-int": ("epochs: 2.5\n", "key 'epochs': invalid int value '2.5'"),
    "bad-choice": ("schedule: linear\n", "key 'schedule': invalid choice 'linear' (choose from multistep, cosine)"),
    "bad-flag-value": ("no_progress: maybe\n", "key 'no_progress': expected true or false"),
    "list-for-number": ("lr: [0.1, 0.2]\n", "key 'lr': expected float"),
    "null-for-number": ("epochs: null\n", "key 'epochs': null is not allowed"),
    "both-spellings": ("batch-size: 64\nbatch_size: 32\n", "key 'batch_size' is given twice"),
    "bad-yaml": ("epochs: [3\n", "is not valid YAML (line 2"),
    "not-a-mapping": ("- epochs\n- 3\n", "must hold a YAML mapping of keys to values, got a list"),
    "scalar": ("just text\n", "got a string"),
    "range-checked-later": ("alpha: 1.5\n", "alpha 1.5 is out of range"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
@pytest.mark.parametrize("show", [False, True])
def test_bad_config_is_one_line_and_writes_nothing(
    case: str, show: bool, tmp_path: Path, fake_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, fragment = BAD_CONFIGS[case]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    out = tmp_path / "out"
    before = tree_digest(tmp_path)
    argv = [
        "train",
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--data-dir",
        str(fake_fmnist),
        "--no-download",
        "--method",
        "reffakd",
    ]
    assert main(["config", "show", *argv] if show else argv) == 1
    captured = capsys.readouterr()
    one_error_line(captured.err, fragment.format(path=cfg))
    assert captured.out == "" and "Traceback" not in captured.err
    assert tree_digest(tmp_path) == before and not out.exists() and not (tmp_path / "out.partial").exists()


def test_missing_config_file_and_unknown_show_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "nope.yaml")]) == 1
    one_error_line(capsys.readouterr().err, "cannot be read")
    assert main(["config", "show", "evaluate", "--checkpoint", "x"]) == 1
    one_error_line(
        capsys.readouterr().err, "config show needs a command 'evaluate': one of run, softlabels, train, compare, sweep"
    )
    assert list(tmp_path.iterdir()) == []


def test_out_may_come_from_the_config_but_must_come_from_somewhere(tmp_path: Path) -> None:
    cfg = write_yaml(tmp_path / "c.yaml", {"epochs": 1})
    assert main(["train", "--config", str(cfg)]) == 1  # one line, as for any missing required option
    assert list(tmp_path.iterdir()) == [cfg]


# --------------------------------------------------------------------------- config show


def test_config_show_prints_the_resolved_yaml_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_yaml(
        tmp_path / "run.yaml",
        {
            "out": str(tmp_path / "never"),
            "ae-epochs": 2,
            "milestones": [3, 6],
            "alpha": 0.3,
            "streaming": False,
            "dataset": "mnist",
        },
    )
    before = tree_digest(tmp_path)
    assert main(["config", "show", "run", "--config", str(cfg), "-T", "2", "--dataset", "fashion-mnist"]) == 0
    text = capsys.readouterr().out
    shown = body(text)
    assert text.startswith("# reffakd ") and "config show" not in text
    assert (
        shown["ae_epochs"],
        shown["milestones"],
        shown["alpha"],
        shown["temperature"],
        shown["streaming"],
        shown["dataset"],
    ) == (2, [3, 6], 0.3, 2.0, False, "fashion-mnist")
    assert shown["epochs"] == 15 and "config" not in shown  # run's default; --config itself is not a key
    assert tree_digest(tmp_path) == before and not (tmp_path / "never").exists()
    assert main(["config", "show", "train"]) == 0  # no --out needed just to look
    assert body(capsys.readouterr().out)["out"] is None


# ---------------------------------------------------------------------- compare: YAML is one more way to give the spec


def test_compare_config_holds_flags_and_spec_sections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_yaml(
        tmp_path / "spec.yaml", {"seeds": [1], "student": {"lr": 0.02}, "method_params": {"ls": {"epsilon": 0.3}}}
    )
    cfg = write_yaml(
        tmp_path / "cmp.yaml",
        {
            "out": str(tmp_path / "cmp"),
            "spec": str(spec),
            "methods": ["ce", "ls", "kd"],
            "seeds": [2],
            "method_params": {"ls": {"epsilon": 0.2}},
            "teacher": "t.safetensors",
            "epochs": 3,
            "jobs": 2,
            "dataset": "mnist",
        },
    )
    assert main(["config", "show", "compare", "--config", str(cfg)]) == 0
    shown = body(capsys.readouterr().out)
    assert shown["methods"] == ["ce", "ls", "kd"] and shown["seeds"] == [
        2
    ]  # config sections win over the spec it names
    assert (
        shown["method_params"] == {"ls": {"epsilon": 0.2}} and shown["student"]["lr"] == 0.02
    )  # the spec's other keys stay
    assert shown["teacher"] == {"checkpoint": "t.safetensors"}  # a plain value of an option key is that option
    assert shown["student"]["epochs"] == 3 and shown["data"]["dataset"] == "mnist" and shown["jobs"] == 2
    assert "spec" not in shown and "epochs" not in shown  # folded into the sections
    # A --spec typed on the command line wins over the config's sections; a flag wins over both.
    assert main(["config", "show", "compare", "--config", str(cfg), "--spec", str(spec)]) == 0
    assert body(capsys.readouterr().out)["seeds"] == [1]
    assert main(["config", "show", "compare", "--config", str(cfg), "--spec", str(spec), "--seeds", "7"]) == 0
    assert body(capsys.readouterr().out)["seeds"] == [7]
    # The shown config, read back, resolves to itself.
    assert main(["config", "show", "compare", "--config", str(cfg)]) == 0
    first = capsys.readouterr().out
    (tmp_path / "shown.yaml").write_text(first)
    assert main(["config", "show", "compare", "--config", str(tmp_path / "shown.yaml")]) == 0
    assert body(capsys.readouterr().out) == body(first)


@pytest.mark.parametrize(
    "data,fragment",
    [
        ({"method": ["ce"]}, "unknown key 'method' (did you mean 'methods'?)"),
        (
            {"grid": {"methods": ["reffakd"], "params": {"alpah": [0.1]}}},
            "grid key 'alpah' cannot vary (did you mean 'alpha'?)",
        ),
        ({"student": {"epochs": 0}}, "epochs 0 is out of range"),
        ({"jobs": 0}, "--jobs 0 is out of range"),
        ({"seeds": "0,x"}, "key 'seeds': '0,x' must be comma-separated integers"),
        (
            {"student": {"lr": "1e-3"}},
            "student lr '1e-3' has the wrong type: expected float "
            "(YAML reads 1e-3 or 1.5e4 as text: write 1.0e-3 or 1.5e+4)",
        ),
        ({"data": {"val_size": "x"}}, "data val_size 'x' has the wrong type: expected int"),
        ({"student": {"epoch": 3}}, "student: unknown key 'epoch' (did you mean 'epochs'?)"),
        ({"soft_labels": {"bost": 0.5}}, "soft_labels: unknown key 'bost' (did you mean 'boost'?)"),
        ({"soft_labels": {"boost": 0.5, "diagonal_boost": 0.5}}, "'diagonal_boost' is the old name of 'boost'"),
        ({"soft_labels": {"autoencoder": {"lrr": 0.1}}}, "soft_labels.autoencoder: unknown key 'lrr'"),
        ({"method_params": {"ls": {"epsilon": "0.1"}}}, "method_params ls epsilon '0.1' must be a number"),
    ],
)
def test_bad_compare_config_is_one_line(
    data: dict, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_yaml(tmp_path / "c.yaml", {"out": str(tmp_path / "cmp"), **data})
    assert main(["compare", "--config", str(cfg)]) == 1
    one_error_line(capsys.readouterr().err, fragment)
    assert not (tmp_path / "cmp").exists()


def test_soft_label_keys_are_the_flags_and_the_old_keys_are_still_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spec's soft_labels keys are the flags of `reffakd softlabels`; a section written with the old names (a
    config.yaml or spec.json of before) reads the same, with one note per old key, and its folder resumes."""
    from reffakd import settings
    from reffakd.compare import SPEC_FILE, check_resumable
    from reffakd.runconfig import check_command, compare_spec

    settings._NOTED.clear()  # each note is written once per process

    old = {"diagonal_boost": 0.2, "temperature": 0.5, "equalize_own": False, "samples_per_class": 4}
    new = {"boost": 0.2, "soft_temperature": 0.5, "equalize_own_prob": False, "samples_per_class": 4}
    specs = []
    for section in (old, new):
        cfg = write_yaml(tmp_path / "c.yaml", {"methods": ["reffakd"], "soft_labels": {"preset": "paper", **section}})
        specs.append(compare_spec(parse_command(["compare", "--out", "x", "--config", str(cfg)])))
    assert specs[0].to_dict() == specs[1].to_dict() and specs[0].soft_labels.to_dict()["boost"] == 0.2
    assert specs[0].soft_label_config() == specs[1].soft_label_config()
    flags = ["softlabels", "--out", "x", "--boost", "0.2", "--soft-temperature", "0.5", "--samples-per-class", "4"]
    assert check_command(parse_command(flags)).calibration == specs[1].soft_label_config().calibration
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 3 and "key 'diagonal_boost' is now 'boost' (the old name is still read)" in notes[0]
    autoencoder = specs[1].soft_labels.autoencoder
    started = {**specs[1].to_dict(), "soft_labels": {"preset": "paper", "seed": 0, "autoencoder": autoencoder, **old}}
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / SPEC_FILE).write_text(json.dumps(started))
    check_resumable(tmp_path / "cmp", specs[1])  # a folder started with the old keys continues


def test_yaml_spec_file_and_json_spec_file_are_the_same(tmp_path: Path) -> None:
    from reffakd.runconfig import compare_spec

    data = {
        "methods": ["ce", "reffakd"],
        "grid": {"methods": ["reffakd"], "params": {"alpha": [0.2, 0.8], "lr": [0.05]}},
    }
    (tmp_path / "s.json").write_text(json.dumps(data))
    write_yaml(tmp_path / "s.yml", data)
    specs = [
        compare_spec(parse_command(["compare", "--out", "x", "--spec", str(tmp_path / name)]))
        for name in ("s.json", "s.yml")
    ]
    assert specs[0].to_dict() == specs[1].to_dict()
    assert [i.variant for i in specs[0].run_items() if i.seed == 0][1:] == [
        "reffakd[alpha=0.2,lr=0.05]",
        "reffakd[alpha=0.8,lr=0.05]",
    ]


def test_vary_flag_builds_or_overrides_a_grid_axis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_yaml(
        tmp_path / "s.yaml",
        {"methods": ["reffakd"], "grid": {"methods": ["reffakd"], "params": {"alpha": [0.1], "temperature": [1, 4]}}},
    )
    assert (
        main(
            [
                "config",
                "show",
                "sweep",
                "--config",
                str(cfg),
                "--vary",
                "alpha=0.3,0.7",
                "--vary",
                "weight-decay=0,1e-4",
            ]
        )
        == 0
    )
    assert body(capsys.readouterr().out)["grid"]["params"] == {
        "alpha": [0.3, 0.7],
        "temperature": [1, 4],
        "weight_decay": [0, 0.0001],
    }
    assert main(["config", "show", "sweep", "--vary", "alpha=0.3", "--vary", "alpha=0.5"]) == 1
    one_error_line(capsys.readouterr().err, "--vary alpha is given twice")
    assert main(["config", "show", "sweep", "--methods", "ce"]) == 1
    one_error_line(capsys.readouterr().err, "sweep needs a grid")


def test_no_grid_drops_the_presets_grid(capsys: pytest.CaptureFixture[str]) -> None:
    """--no-grid: a grid preset's methods run once per seed at their own setting; --vary then starts a fresh grid."""
    preset = ["--preset", "paper-fashion-mnist", "--methods", "ce,reffakd"]
    assert main(["config", "show", "compare", *preset]) == 0
    assert body(capsys.readouterr().out)["grid"]["methods"] == ["reffakd"]
    assert main(["config", "show", "compare", *preset, "--no-grid"]) == 0
    assert body(capsys.readouterr().out)["grid"] is None
    assert main(["config", "show", "compare", *preset, "--no-grid", "--vary", "lr=0.05,0.1"]) == 0
    assert body(capsys.readouterr().out)["grid"] == {"methods": ["ce", "reffakd"], "params": {"lr": [0.05, 0.1]}}
    assert main(["config", "show", "sweep", *preset, "--no-grid"]) == 1
    one_error_line(capsys.readouterr().err, "sweep needs a grid")


def test_field_types_are_the_schema_of_flags_and_keys() -> None:
    """Kinds of option the tree must handle: plain, typed, choices, store_true, --x/--no-x, append, comma lists;
    a key reads as its flag's text does."""
    from reffakd.settings import read_value

    opts = command_options("sweep")
    kinds = {(o.kind, o.optional, o.append) for o in opts.values()}
    assert {(str, False, False), (int, False, False), (bool, False, False), (bool, True, False), (list, True, True),
            (list, True, False)} <= kinds  # fmt: skip
    file = {"vary": ["alpha=0.1,0.2"], "methods": "ce,kd", "streaming": None, "no_download": True}
    values = {k: read_value(opts[k], v, "config x") for k, v in file.items()}
    assert values == {"vary": ["alpha=0.1,0.2"], "methods": ["ce", "kd"], "streaming": None, "no_download": True}
    flags = ["sweep", "--vary", "alpha=0.1,0.2", "--methods", "ce,kd", "--no-download"]
    assert {k: parse_command(flags, require=False).values[k] for k in file} == values


def test_one_method_under_two_names_is_refused_by_what_runs() -> None:
    from reffakd.errors import ReffAKDError
    from reffakd.spec import RunSpec

    with pytest.raises(ReffAKDError, match="methods reffakd and kd\\+aesl run the same"):
        RunSpec(methods=["ce", "reffakd", "kd+aesl"]).validate()
    with pytest.raises(ReffAKDError, match="methods dkd-aesl and dkd\\+aesl run the same"):
        RunSpec(methods=["dkd-aesl", "dkd+aesl"]).validate()
    # set apart by their parameters, they are two methods
    RunSpec(methods=["reffakd", "kd+aesl"], method_params={"kd+aesl": {"alpha": 0.9}}).validate()
