"""Mass and structure of a class table as separate knobs, and the placebo controls of its structure.

A soft-label row has two parts: the mass it keeps on the true class, and how the rest is spread over the other
classes. ReffAKD's claim is about the second part (the autoencoder finds which classes resemble each other), but
with the paper's constants the rows are nearly uniform, so a gain could come from the first part alone (label
smoothing does that). These functions change one part and keep the other:

- ``own``: every row's own-class probability set to p (``None``: each row keeps its own);
- ``off_temperature``: the off-diagonal share follows softmax(scores / t) over the row's other classes, with the
  table's own similarity (or log-probability) scores; ``None``: the table's own proportions;
- ``structure``: ``similarity`` (as computed), ``shuffled`` (each row's off-diagonal entries permuted by a seeded
  random permutation: same own mass, same entropy, wrong classes) or ``uniform`` (the off-diagonal mass spread
  evenly: label smoothing at exactly the row's own mass).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ReffAKDError

if TYPE_CHECKING:  # torch is imported where it is used: the command line reads STRUCTURES without it
    import torch

STRUCTURES = ("similarity", "shuffled", "uniform")


def check_structure(structure: str) -> None:
    if structure not in STRUCTURES:
        raise ReffAKDError(
            f"structure {structure!r} is unknown; allowed: {', '.join(STRUCTURES)}", params=("structure",)
        )


def _other_columns(own_column: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, C - 1): each row's columns other than its own-class column, in column order."""
    import torch

    steps = torch.arange(num_classes - 1, device=own_column.device).expand(own_column.shape[0], -1)
    return steps + (steps >= own_column.unsqueeze(1)).long()


def _own_column(rows: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Each row's own-class column: ``labels`` for per-image rows, the diagonal for a (C, C) class table."""
    import torch

    return torch.arange(rows.shape[0], device=rows.device) if labels is None else labels.long().to(rows.device)


def _assemble(own: torch.Tensor, off: torch.Tensor, columns: torch.Tensor, own_column: torch.Tensor) -> torch.Tensor:
    import torch

    out = torch.empty(off.shape[0], off.shape[1] + 1, dtype=off.dtype, device=off.device)
    out.scatter_(1, columns, off)
    out.scatter_(1, own_column.unsqueeze(1), own.to(off.dtype).unsqueeze(1))
    return out


def shuffle_off_diagonal(rows: torch.Tensor, seed: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Each row's entries other than its own class permuted by its own seeded random permutation; the own-class
    entry kept. ``rows``: a (C, C) class table, or (N, C) per-image rows whose own classes are ``labels``.

    The permutations are the argsort of uniform draws from a CPU generator seeded with ``seed``, one row of draws
    per table row, so the same seed gives the same table on every device.
    """
    import torch

    generator = torch.Generator().manual_seed(int(seed))
    own_column = _own_column(rows, labels)
    columns = _other_columns(own_column, rows.shape[1])
    off = rows.gather(1, columns)
    perms = torch.rand(off.shape, generator=generator, dtype=torch.float64).argsort(1).to(rows.device)
    return _assemble(rows.gather(1, own_column.unsqueeze(1)).squeeze(1), off.gather(1, perms), columns, own_column)


def uniform_off_diagonal(rows: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Each row's own-class entry kept, the rest of its mass spread evenly over the other classes."""
    own_column = _own_column(rows, labels)
    columns = _other_columns(own_column, rows.shape[1])
    own = rows.gather(1, own_column.unsqueeze(1)).squeeze(1)
    rest = ((1.0 - own) / (rows.shape[1] - 1)).unsqueeze(1).expand(-1, rows.shape[1] - 1)
    return _assemble(own, rest.to(rows.dtype), columns, own_column)


def restructure(
    table: torch.Tensor,
    *,
    own: float | None = None,
    scores: torch.Tensor | None = None,
    off_temperature: float | None = None,
    structure: str = "similarity",
    seed: int = 0,
) -> torch.Tensor:
    """``table`` (row-stochastic, (C, C)) with its own-class mass, off-diagonal sharpness and structure set.

    ``scores``: the (C, C) scores whose off-diagonal softmax at ``off_temperature`` gives each row's off-diagonal
    proportions (the class similarities for AESL, log-probabilities for a network's class table); needed only with
    ``off_temperature``. With every knob at its default the table is returned unchanged (the same tensor).
    """
    import torch

    check_structure(structure)
    if own is None and off_temperature is None and structure == "similarity":
        return table
    c = table.shape[0]
    if c < 2 or table.shape != (c, c):
        raise ReffAKDError(f"a class table to restructure must be (C, C) with C >= 2, got {tuple(table.shape)}")
    out = table
    if own is not None or off_temperature is not None:
        columns = _other_columns(torch.arange(c, device=table.device), c)
        if off_temperature is not None:
            if scores is None:
                raise ReffAKDError("an off-diagonal temperature needs the table's scores (its class similarities)")
            share = torch.softmax(scores.to(table.dtype).to(table.device).gather(1, columns) / off_temperature, dim=1)
        else:
            off = table.gather(1, columns)
            share = off / off.sum(1, keepdim=True).clamp_min(torch.finfo(off.dtype).tiny)
        own_mass = table.diagonal() if own is None else torch.full((c,), float(own), dtype=table.dtype)
        own_mass = own_mass.to(table.device)
        out = _assemble(own_mass, (1.0 - own_mass).unsqueeze(1) * share, columns, torch.arange(c, device=table.device))
    return with_structure(out, structure, seed)


def with_structure(
    rows: torch.Tensor, structure: str, seed: int = 0, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """``rows`` in the asked structure: unchanged (``similarity``), ``shuffled`` or ``uniform``; (C, C) class tables,
    or (N, C) per-image rows whose own classes are ``labels``."""
    check_structure(structure)
    if structure == "shuffled":
        return shuffle_off_diagonal(rows, seed, labels)
    if structure == "uniform":
        return uniform_off_diagonal(rows, labels)
    return rows
