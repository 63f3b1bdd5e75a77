"""Report stage: plots and tables."""

from .plots import plot_reconstructions, plot_soft_labels, plot_training_curves, plots_off
from .tables import format_flops, markdown_table, summary_table

__all__ = [
    "format_flops",
    "markdown_table",
    "plot_reconstructions",
    "plot_soft_labels",
    "plot_training_curves",
    "plots_off",
    "summary_table",
]
