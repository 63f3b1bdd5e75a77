"""The method registry: the one home of a method.

A method declares, in one ``register_method`` call: its typed parameter record (``params.Params``:
defaults, types, ranges, help), where its soft targets come from (a ``SourceKind``), its one-line
summary and its role in reports. Everything else is derived from the registry: the command-line
flags of the method parameters, the grid keys of ``compare``/``sweep`` and their types, the order
of methods in reports (registration order), and the parameter table of docs/METHODS.md
(``methods_table``). Registering a method from any module makes it trainable, sweepable and
reported without an edit anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch.nn as nn

from ..errors import ReffAKDError
from .params import NoParams, ParamInfo, Params

if TYPE_CHECKING:
    from ..softlabels.artifact import SoftLabels
    from ..sources import SoftTargetSource
    from .base import Distiller


@dataclass(frozen=True)
class SourceKind:
    """Where a method's soft targets come from, as the runner must supply them.

    ``input``: what a run is given (``"soft_labels"``: an autoencoder soft-label artifact;
    ``"teacher"``: a trained network), or ``None`` when the method needs nothing or makes its own
    targets. ``same_seed_run``: the teacher is the finished run of that method with the same seed
    (Tf-KD self: the plain CE student), so a comparison runs that method first.
    """

    name: str
    description: str
    input: str | None = None
    same_seed_run: str | None = None

    def needs_text(self) -> str:
        """What a run without its input lacks, for the one-line error."""
        if self.input == "soft_labels":
            return "soft labels (soft_labels PATH, made by `reffakd softlabels`)"
        if self.same_seed_run is not None:
            return (
                f"a teacher (teacher PATH: the {self.same_seed_run} student of the same seed, made by `reffakd train`)"
            )
        return "a teacher (teacher PATH, a checkpoint made by `reffakd train`)"


NO_SOURCE = SourceKind("none", "-")
OWN_TABLE = SourceKind("own", "its own class table, made from its parameters")
SOFT_LABELS = SourceKind("soft_labels", "autoencoder soft labels", input="soft_labels")
TEACHER = SourceKind("teacher", "a teacher network", input="teacher")
SAME_SEED_CE = SourceKind("ce_of_seed", "the CE student of the same seed", input="teacher", same_seed_run="ce")

ROLES = ("baseline", "method")


@dataclass(frozen=True)
class BuildContext:
    """What a method's builder may use beyond its parameters and source."""

    num_classes: int
    total_epochs: int = 1


Builder = Callable[[nn.Module, Any, "SoftTargetSource | None", BuildContext], "Distiller"]


@dataclass(frozen=True)
class Method:
    name: str
    params: type[Params]
    source: SourceKind
    builder: Builder
    summary: str = ""
    role: str = "method"  # "baseline": the plain reference every other method is set against

    def parameters(self, overrides: dict[str, Any] | None = None) -> Params:
        return self.params.build(self.name, overrides)

    @property
    def needs(self) -> str | None:
        """The input a run must be given: ``"soft_labels"``, ``"teacher"`` or ``None``."""
        return self.source.input


DISTILLERS: dict[str, Method] = {}


def register_method(
    name: str,
    *,
    params: type[Params] = NoParams,
    source: SourceKind = NO_SOURCE,
    summary: str = "",
    role: str = "method",
) -> Callable[[Builder], Builder]:
    """Register ``builder(student, params, source, context) -> Distiller`` as method ``name``.

    A parameter name shared with another method must have the same type (it is one flag and one
    grid key); the registry refuses a clash at registration.
    """
    if role not in ROLES:
        raise ValueError(f"role {role!r}: one of {ROLES}")

    def wrap(builder: Builder) -> Builder:
        new = params.info()
        for other in DISTILLERS.values():
            for key, p in other.params.info().items():
                if key in new and new[key].type is not p.type and other.name != name:
                    raise ValueError(f"parameter {key!r} of {name} is {new[key].type.__name__}, of {other.name} "
                                     f"{p.type.__name__}; a shared name must have one type")  # fmt: skip
        DISTILLERS[name] = Method(name, params, source, builder, summary, role)
        return builder

    return wrap


def unregister_method(name: str) -> None:
    """Remove a method (tests that register one of their own clean up with this)."""
    DISTILLERS.pop(name, None)


def get_method(name: str) -> Method:
    if name not in DISTILLERS:
        raise ReffAKDError(f"unknown method {name!r}; available: {', '.join(sorted(DISTILLERS))}")
    return DISTILLERS[name]


def tuning_grid(name: str) -> dict[str, list[Any]]:
    """The values equal tuning tries for each of a method's parameters (``param(tune=...)``); {} when none.

    Each value is checked against the parameter's range, so a bad declaration fails where it is written.
    """
    grid: dict[str, list[Any]] = {}
    for key, info in get_method(name).params.info().items():
        for value in info.tune:
            if not info.range.contains(float(value)) or (info.type is int and int(value) != value):
                raise ValueError(f"method {name}: tuning value {value!r} of {key} is outside {info.range.text()}")
        if info.tune:
            grid[key] = [info.type(v) for v in info.tune]
    return grid


def baseline_method() -> str | None:
    """The method every other one is paired with in reports: the first registered with role "baseline"."""
    return next((m.name for m in DISTILLERS.values() if m.role == "baseline"), None)


def method_names() -> list[str]:
    """Every method in report order (the order of registration)."""
    return list(DISTILLERS)


def method_params(method: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The method's defaults updated with ``overrides`` (``None``: the default), checked, as a dict."""
    return get_method(method).parameters(overrides).to_dict()


def parameter_fields() -> dict[str, list[tuple[str, ParamInfo]]]:
    """Each parameter name of any method -> the (method, field) pairs that declare it, in report order."""
    out: dict[str, list[tuple[str, ParamInfo]]] = {}
    for m in DISTILLERS.values():
        for key, p in m.params.info().items():
            out.setdefault(key, []).append((m.name, p))
    return out


def parameter_types() -> dict[str, type]:
    """Parameter name -> float or int: the type of its flag and of its grid values."""
    return {key: uses[0][1].type for key, uses in parameter_fields().items()}


def parameter_help(key: str) -> str:
    """One help text for a shared flag: each method group's own meaning and default."""
    groups: dict[tuple[str, str], list[str]] = {}
    for method, p in parameter_fields()[key]:
        groups.setdefault((p.help, p.default_shown()), []).append(method)
    return "; ".join(f"{', '.join(ms)}: {h} (default {d})" for (h, d), ms in groups.items())


def resolve_source(
    method: Method,
    soft_labels: SoftLabels | None = None,
    teacher: SoftTargetSource | None = None,
) -> SoftTargetSource | None:
    """The source a run of ``method`` trains against, from the input its kind names; one line when it is missing."""
    from ..sources import soft_label_table

    kind = method.source
    if kind.input is None:
        return None
    given = soft_labels if kind.input == "soft_labels" else teacher
    if given is None:
        raise ReffAKDError(f"method {method.name} needs {kind.needs_text()}", params=(kind.input,))
    return soft_label_table(soft_labels) if kind.input == "soft_labels" else teacher


def build_distiller(
    method: str,
    student: nn.Module,
    *,
    num_classes: int,
    params: dict[str, Any] | None = None,
    total_epochs: int = 1,
    soft_labels: SoftLabels | None = None,
    teacher: SoftTargetSource | None = None,
) -> Distiller:
    """Build ``method`` around ``student``, its source made from ``soft_labels`` or ``teacher`` as its kind says."""
    spec = get_method(method)
    source = resolve_source(spec, soft_labels, teacher)
    return spec.builder(student, spec.parameters(params), source, BuildContext(num_classes, total_epochs))


def methods_table() -> str:
    """docs/METHODS.md's tables of methods and of their flags, from the registry (a test keeps the page in step)."""
    rows = [
        "| method | role | soft targets | parameters: default, allowed | equal tuning tries | what it is |",
        "|---" * 6 + "|",
    ]
    for m in DISTILLERS.values():
        params = "; ".join(
            f"{k} {p.default_shown()}, {'whole number ' if p.type is int else ''}{p.range.text()}"
            for k, p in m.params.info().items()
        )
        tries = "; ".join(f"{k} {', '.join(f'{v:g}' for v in values)}" for k, values in tuning_grid(m.name).items())
        rows.append(
            f"| `{m.name}` | {m.role} | {m.source.description} | {params or '-'} | {tries or '-'} | {m.summary} |"
        )
    rows += ["", "| flag | type | meaning per method (default) |", "|---|---|---|"]
    for key, uses in parameter_fields().items():
        p = uses[0][1]
        flag = f"`{p.short}`, `{p.flag}`" if p.short else f"`{p.flag}`"
        rows.append(f"| {flag} | {p.type.__name__} | {parameter_help(key)} |")
    return "\n".join(rows)
