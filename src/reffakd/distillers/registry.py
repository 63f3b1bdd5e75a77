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

import dataclasses
import json
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ReffAKDError
from .params import NoParams, ParamInfo, Params

if TYPE_CHECKING:  # torch-free: the command line reads the registry's names (``cli_catalog``) without torch
    import torch.nn as nn

    from ..data import DataSplits
    from ..softlabels.artifact import SoftLabels
    from ..sources import SoftTargetSource
    from .base import Distiller


@dataclass(frozen=True)
class SourceKind:
    """Where a method's soft targets come from, as the runner must supply them.

    ``input``: what a run is given (``"soft_labels"``: an autoencoder soft-label artifact;
    ``"teacher"``: a trained network), or ``None`` when the method needs nothing or makes its own
    targets. ``same_seed_run``: the teacher is the finished run of that method with the same seed
    (Tf-KD self: the plain CE student), so a comparison runs that method first. ``semi``: the soft labels'
    autoencoder must have trained on unlabelled images too (a comparison builds that second artifact).
    """

    name: str
    description: str
    input: str | None = None
    same_seed_run: str | None = None
    semi: bool = False

    def needs_text(self) -> str:
        """What a run without its input lacks, for the one-line error."""
        if self.input == "soft_labels":
            return "soft labels (soft_labels PATH, made by `reffakd softlabels`)"
        if self.same_seed_run is not None:
            return (
                f"a teacher (teacher PATH: the {self.same_seed_run} student of the same seed, made by `reffakd train`)"
            )
        return "a teacher (teacher PATH, a checkpoint made by `reffakd train`)"

    @property
    def network(self) -> bool:
        """Its soft targets come from a trained teacher network, whose cost reports set against the reference's."""
        return self.input == "teacher"


NO_SOURCE = SourceKind("none", "-")
OWN_TABLE = SourceKind("own", "its own class table, made from its parameters")
SOFT_LABELS = SourceKind("soft_labels", "autoencoder soft labels", input="soft_labels")
SOFT_LABELS_SEMI = SourceKind(
    "soft_labels_semi", "autoencoder soft labels, autoencoder also on unlabelled images", input="soft_labels", semi=True
)
TEACHER = SourceKind("teacher", "a teacher network", input="teacher")
SAME_SEED_CE = SourceKind("ce_of_seed", "the CE student of the same seed", input="teacher", same_seed_run="ce")
LEARNED = SourceKind("learned", "the student's own predictions, learned during training")

# "control": an arm of a controlled study (a placebo or a reference), run only when a comparison names it
ROLES = ("baseline", "method", "control")


@dataclass(frozen=True)
class BuildContext:
    """What a method's builder may use beyond its parameters and source.

    ``num_samples``: training images (a per-image source holds one row each); ``input_shape``: (C, H, W),
    to count a source's forward FLOPs; ``soft_labels``: the artifact itself (a per-image source reads its
    per-image table); ``split_fingerprint``: the content hash of the training split it must match.
    """

    num_classes: int
    total_epochs: int = 1
    num_samples: int = 0
    input_shape: tuple[int, int, int] | None = None
    soft_labels: SoftLabels | None = None
    split_fingerprint: str | None = None
    data: DataSplits | None = None  # the run's splits, for a source made from the labelled images (a network's table)


Builder = Callable[["nn.Module", Any, "SoftTargetSource | None", BuildContext], "Distiller"]


@dataclass(frozen=True)
class Method:
    name: str
    params: type[Params]
    source: SourceKind
    builder: Builder
    summary: str = ""
    role: str = "method"  # "baseline": the plain reference every other method is set against
    cost_reference: bool = False  # the method whose soft-target cost reports set the network-sourced ones against
    form: str | None = None  # a preset or combination: its loss form (``LOSS_FORMS``)
    target_source: str | None = None  # ... and its source (``TARGET_SOURCES``)

    def parameters(self, overrides: Params | Mapping[str, Any] | None = None) -> Params:
        """The method's parameters: its own ``Params`` as they are, or its defaults updated with ``overrides``."""
        return overrides if isinstance(overrides, self.params) else self.params.build(self.name, overrides)

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
    cost_reference: bool = False,
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
        DISTILLERS[name] = Method(name, params, source, builder, summary, role, cost_reference=cost_reference)
        return builder

    return wrap


def unregister_method(name: str) -> None:
    """Remove a method (tests that register one of their own clean up with this)."""
    DISTILLERS.pop(name, None)


def get_method(name: str) -> Method:
    """A registered method, or the combination ``FORM+SOURCE`` of a loss form and a source (one line if neither)."""
    if name in DISTILLERS:
        return DISTILLERS[name]
    if isinstance(name, str) and "+" in name:
        form, _, source = name.partition("+")
        return combination(form, source)
    raise ReffAKDError(
        f"unknown method {name!r}; available: {', '.join(sorted(DISTILLERS))}, or FORM+SOURCE with FORM one of "
        f"{', '.join(LOSS_FORMS)} and SOURCE one of {', '.join(TARGET_SOURCES)}"
    )


# --------------------------------------------------------------------------- loss forms x sources


@dataclass(frozen=True)
class LossForm:
    """How the student's logits meet a batch of soft targets: ``build(student, params, source, context)``.

    ``refuses(source)``: why a source makes no sense with this form (one line), or ``None``.
    """

    name: str
    params: type[Params]
    build: Callable[[nn.Module, Any, SoftTargetSource, BuildContext], Distiller]
    formula: str
    refuses: Callable[[TargetSource], str | None] = lambda source: None


@dataclass(frozen=True)
class TargetSource:
    """Where a batch's soft targets come from: ``make(student, params, given, context)`` -> a ``SoftTargetSource``.

    ``kind``: what a run must be given (``given`` is that input as ``resolve_source`` makes it: the class
    table of the soft labels, or the teacher). ``empty_at_start``: its first targets are not distributions
    (OLS's table is all zeros during the first epoch).
    """

    name: str
    kind: SourceKind
    params: type[Params]
    make: Callable[[nn.Module, Any, SoftTargetSource | None, BuildContext], SoftTargetSource]
    summary: str
    empty_at_start: bool = False
    per_image: bool = False  # one target per training image: its table is tied to the split's content hash
    restructures: bool = False  # sets the mass and structure of the soft labels itself: needs them as computed


def restructures_soft_labels(method: str) -> bool:
    """Whether ``method``'s source sets the soft labels' mass and structure itself (the structure study's arms), so
    that it must be given soft labels with the similarities' own structure."""
    source = get_method(method).target_source
    return source is not None and TARGET_SOURCES[source].restructures


LOSS_FORMS: dict[str, LossForm] = {}
TARGET_SOURCES: dict[str, TargetSource] = {}
_COMBINATIONS: dict[str, Method] = {}


def register_loss_form(form: LossForm) -> LossForm:
    LOSS_FORMS[form.name] = form
    return form


def register_source(source: TargetSource) -> TargetSource:
    TARGET_SOURCES[source.name] = source
    return source


def combined_params(
    name: str,
    form: LossForm,
    source: TargetSource,
    defaults: dict[str, Any],
    tune: dict[str, tuple[float, ...]] | None = None,
) -> type[Params]:
    """One parameter record: the form's fields, then the source's, with ``defaults`` replacing theirs and
    ``tune`` their equal-tuning values (``()``: not tuned, e.g. PS-KD's form weight, which the method fixes).

    It inherits both records (so their methods, such as DKD's ``warmup``, work on it); a name in both is
    refused (it would be one flag with two meanings).
    """
    tune = tune or {}
    shared = set(form.params.info()) & set(source.params.info())
    if shared:
        raise ValueError(f"{name}: parameters {sorted(shared)} are in both {form.name} and {source.name}")
    unknown = (set(defaults) | set(tune)) - set(form.params.info()) - set(source.params.info())
    if unknown:
        raise ValueError(f"{name}: defaults or tuning values for parameters it does not take: {sorted(unknown)}")
    fields: list[tuple[str, Any, Any]] = []
    for cls in (form.params, source.params):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in defaults or f.name in tune:
                meta = {**f.metadata, **({"tune": tuple(tune[f.name])} if f.name in tune else {})}
                default = defaults.get(f.name, f.default)
                fields.append((f.name, hints[f.name], dataclasses.field(default=default, metadata=meta)))
    bases = tuple(dict.fromkeys(c for c in (source.params, form.params) if c is not NoParams)) or (NoParams,)
    label = form.params.label or source.params.label
    cls_name = "".join(part.capitalize() for part in name.replace("+", "-").split("-")) + "Params"
    return dataclasses.make_dataclass(cls_name, fields, bases=bases, frozen=True, namespace={"label": label})


def _compose(form: LossForm, source: TargetSource) -> Builder:
    def build(student: nn.Module, p: Any, given: SoftTargetSource | None, ctx: BuildContext) -> Distiller:
        src = source.make(student, p, given, ctx)
        distiller = form.build(student, p, src, ctx)
        attach = getattr(src, "attach", None)
        if attach is not None:  # a source that runs the student (CS-KD) runs it as it trains
            attach(lambda: distiller.student)
        return distiller

    return build


def register_preset(
    name: str,
    form: str,
    source: str,
    *,
    defaults: dict[str, Any] | None = None,
    tune: dict[str, tuple[float, ...]] | None = None,
    summary: str = "",
    role: str = "method",
    cost_reference: bool = False,
) -> Method:
    """A named method: loss form ``form`` with source ``source`` and its own defaults (and, where the method
    differs from its form's, its own equal-tuning values); one row of the registry."""
    f, s = LOSS_FORMS[form], TARGET_SOURCES[source]
    reason = f.refuses(s)
    if reason is not None:
        raise ValueError(f"preset {name}: {reason}")
    params = combined_params(name, f, s, defaults or {}, tune)
    register_method(name, params=params, source=s.kind, summary=summary, role=role, cost_reference=cost_reference)(
        _compose(f, s)
    )
    DISTILLERS[name] = dataclasses.replace(DISTILLERS[name], form=form, target_source=source)
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


def cost_reference_method() -> str | None:
    """The method whose soft-target cost reports set the network-sourced ones against: the first so registered."""
    return next((m.name for m in DISTILLERS.values() if m.cost_reference), None)


def network_sourced_methods() -> list[str]:
    """The methods whose soft targets come from a teacher network, in the reports' cost table order: those given a
    teacher trained apart, then those taught by a same-seed run, each in registration order."""
    network = [m for m in DISTILLERS.values() if m.source.network]
    return [m.name for m in sorted(network, key=lambda m: m.source.same_seed_run is not None)]


def combination(form: str, source: str) -> Method:
    """The method ``FORM+SOURCE``: the form's and the source's parameters with their own defaults."""
    name = f"{form}+{source}"
    if name in _COMBINATIONS:
        return _COMBINATIONS[name]
    if form not in LOSS_FORMS or source not in TARGET_SOURCES:
        bad = f"loss form {form!r}" if form not in LOSS_FORMS else f"source {source!r}"
        raise ReffAKDError(
            f"method {name!r}: unknown {bad}; loss forms: {', '.join(LOSS_FORMS)}; sources: {', '.join(TARGET_SOURCES)}"
        )
    f, s = LOSS_FORMS[form], TARGET_SOURCES[source]
    reason = f.refuses(s)
    if reason is not None:
        raise ReffAKDError(f"method {name}: {reason}")
    try:
        params = combined_params(name, f, s, {})
    except ValueError as exc:
        raise ReffAKDError(f"method {name}: {exc}") from None
    summary = f"{f.formula}, targets from {s.summary}"
    method = Method(name, params, s.kind, _compose(f, s), summary, form=form, target_source=source)
    _COMBINATIONS[name] = method
    return method


def default_methods() -> list[str]:
    """What a comparison runs when it names no methods: every method in report order, but the semi-supervised
    ones, which train exactly as their supervised twins unless a labelled budget withholds images, and a study's
    controls."""
    return [name for name, m in DISTILLERS.items() if not m.source.semi and m.role != "control"]


def method_names() -> list[str]:
    """Every method in report order (the order of registration)."""
    return list(DISTILLERS)


def method_choices() -> list[str]:
    """What ``--method`` accepts: the named methods, then every ``FORM+SOURCE`` pair (a pair that makes no sense
    is accepted here and refused, with its reason, when the method is built)."""
    return method_names() + [f"{f}+{s}" for f in LOSS_FORMS for s in TARGET_SOURCES]


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
    params: Params | dict[str, Any] | None = None,
    total_epochs: int = 1,
    soft_labels: SoftLabels | None = None,
    teacher: SoftTargetSource | None = None,
    num_samples: int = 0,
    input_shape: tuple[int, int, int] | None = None,
    split_fingerprint: str | None = None,
    data: DataSplits | None = None,
) -> Distiller:
    """Build ``method`` around ``student``, its source made from ``soft_labels`` or ``teacher`` as its kind says.

    ``num_samples``, ``input_shape``, ``split_fingerprint``: the training split, for per-image and learning
    sources (``BuildContext``).
    """
    spec = get_method(method)
    source = resolve_source(spec, soft_labels, teacher)
    ctx = BuildContext(num_classes, total_epochs, num_samples, input_shape, soft_labels, split_fingerprint, data)
    return spec.builder(student, spec.parameters(params), source, ctx)


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
    return "\n".join(rows + ["", forms_table()])


def forms_table() -> str:
    """The loss forms, the sources, and which ``FORM+SOURCE`` combinations run (a refusal says why, in short)."""
    presets: dict[tuple[str, str], list[str]] = {}
    for m in DISTILLERS.values():
        if m.form is not None and m.target_source is not None:
            presets.setdefault((m.form, m.target_source), []).append(m.name)
    rows = ["| loss form | loss | parameters |", "|---|---|---|"]
    for f in LOSS_FORMS.values():
        formula = f.formula.replace("||", "\\|\\|")  # a bare | would end the table cell
        rows.append(f"| `{f.name}` | {formula} | {', '.join(f.params.info()) or '-'} |")
    rows += ["", "| source | a run is given | parameters | targets |", "|---|---|---|---|"]
    for src in TARGET_SOURCES.values():
        given = src.kind.input or ("-" if src.kind.name != "own" else "- (its own table)")
        rows.append(f"| `{src.name}` | {given} | {', '.join(src.params.info()) or '-'} | {src.summary} |")
    rows += ["", "| form \\ source | " + " | ".join(f"`{n}`" for n in TARGET_SOURCES) + " |"]
    rows.append("|---" * (len(TARGET_SOURCES) + 1) + "|")
    for f in LOSS_FORMS.values():
        cells = []
        for src in TARGET_SOURCES.values():
            named = presets.get((f.name, src.name))
            cells.append("refused" if f.refuses(src) else (", ".join(named) if named else "yes"))
        rows.append(f"| `{f.name}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


CATALOG = Path(__file__).with_name("catalog.json")


def catalog() -> dict[str, Any]:
    """What the command line shows of the registry: ``--method``'s choices, one flag per method parameter (its type,
    help and short flag) and ``reffakd methods``' tables."""
    params = {key: {"type": uses[0][1].type.__name__, "help": parameter_help(key), "short": uses[0][1].short}
              for key, uses in parameter_fields().items()}  # fmt: skip
    return {"choices": method_choices(), "params": params, "table": methods_table()}


def cli_catalog() -> dict[str, Any]:
    """``catalog()`` without importing torch, for help and argument errors: catalog.json, written from the registry (a
    test fails when the two differ), until the methods are imported; then the registry itself (a method registered
    at run time has its flag)."""
    if f"{__package__}.methods" in sys.modules:
        return catalog()
    return typing.cast(dict[str, Any], json.loads(CATALOG.read_text(encoding="utf-8")))
