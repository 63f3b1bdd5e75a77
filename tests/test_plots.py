"""Plots: PNGs written atomically, without touching the process's matplotlib backend or pyplot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reffakd.reports import plot_reconstructions, plot_soft_labels, plot_training_curves
from reffakd.softlabels.artifact import SoftLabels

PNG = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.usefixtures("plots")  # the suite runs without figures (conftest)


def test_plots_are_pngs_and_leave_no_temporary_files(tmp_path: Path) -> None:
    soft = SoftLabels(torch.full((3, 3), 1 / 3), ("a", "b", "c"), metadata={"temperature": 2.0})
    plot_soft_labels(soft, tmp_path / "soft.png")
    plot_reconstructions(torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8), tmp_path / "recon.png")
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_top1": 10.0 * e} for e in (1, 2, 3)]
    plot_training_curves({"ce": history}, tmp_path / "curves.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "recon.png", "soft.png"]
    assert all(p.read_bytes().startswith(PNG) for p in tmp_path.iterdir())


def test_a_failed_plot_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    def fail(self: Figure, fname: object, **kwargs: object) -> None:
        Path(str(fname)).write_bytes(PNG)  # part of a file, then the failure
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_training_curves({"ce": [{"epoch": 1, "train_loss": 1.0, "val_top1": 50.0}]}, tmp_path / "curves.png")
    assert list(tmp_path.iterdir()) == []


def test_importing_reffakd_leaves_the_matplotlib_backend_alone() -> None:
    code = (
        "import sys, matplotlib; matplotlib.use('svg');"
        "import reffakd.reports, reffakd.reports.compare_report, reffakd.softlabels.builder;"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend();"
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_plots_draws_nothing_and_leaves_the_switch_as_it_was(tmp_path: Path, fake_fmnist: Path) -> None:
    """--no-plots: the run's files but its figures; the process draws again after the command (the Python API)."""
    from reffakd.cli import main
    from reffakd.reports.plots import plots_enabled

    argv = ["train", "--data-dir", str(fake_fmnist), "--val-size", "100", "--no-download", "--device", "cpu",
            "--no-progress", "--epochs", "1", "--batch-size", "64"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "drawn")]) == 0
    assert main([*argv, "--out", str(tmp_path / "plain"), "--no-plots"]) == 0
    drawn, plain = ({p.name for p in (tmp_path / d).iterdir()} for d in ("drawn", "plain"))
    assert drawn - plain == {"curves.png"} and plain < drawn
    assert plots_enabled()
