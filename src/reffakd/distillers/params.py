"""Typed parameter records of the methods: defaults, types, ranges and help, declared once per field.

A method's parameters are a frozen dataclass whose fields are made with ``param(...)``. Everything
else is derived from it: validation (one line naming the parameter, the bad value and the allowed
range), the command-line flags (``--own-probability``), the grid keys of ``compare``/``sweep`` and
their types, and the parameter table of docs/METHODS.md. So a new parameter is one field.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import ReffAKDError


@dataclass(frozen=True)
class Range:
    """An interval of allowed values; ``None`` bounds are open to infinity."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def text(self) -> str:
        """``[0, 1]``, ``(0, 1)``, ``> 0``, ``>= 0``: how the docs and errors write the range."""
        if self.low is not None and self.high is not None:
            return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "any finite number"

    def requirement(self) -> str:
        """``lie in [0, 1]`` or ``be > 0``: what an error says the value must do."""
        bounded = self.low is not None and self.high is not None
        return f"lie in {self.text()}" if bounded else f"be {self.text()}"


def param(
    default: Any,
    help: str,
    *,
    range: Range = Range(),
    default_text: str | None = None,
    short: str | None = None,
    tune: tuple[float, ...] = (),
) -> Any:
    """A method parameter: its default, a one-line help, its allowed range; ``short``: a short flag (``-T``).

    ``default_text`` describes a ``None`` default (``1/12 of the epochs``) in help and docs. ``tune``: the
    values ``compare``'s equal tuning tries (the method's tuning grid is the product over its parameters).
    """
    meta = {"help": help, "range": range, "default_text": default_text, "short": short, "tune": tuple(tune)}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ParamInfo:
    """One field of a parameter record, as the CLI, the grids and the docs see it."""

    name: str
    type: type  # float or int
    optional: bool  # None allowed (the method then derives a value, e.g. from the epochs)
    default: Any
    help: str
    range: Range
    default_text: str | None
    short: str | None
    tune: tuple[float, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def default_shown(self) -> str:
        if self.default is None:
            return self.default_text or "none"
        return f"{self.default:g}" if isinstance(self.default, (int, float)) else str(self.default)


def _number_type(tp: Any) -> tuple[type, bool]:
    """(float or int, optional?) of a field annotation such as ``float`` or ``int | None``."""
    args = typing.get_args(tp) or (tp,)
    optional = type(None) in args
    kinds = [a for a in args if a is not type(None)]
    if len(kinds) != 1 or kinds[0] not in (float, int):
        raise TypeError(f"a method parameter is a float or an int (optionally None), not {tp}")
    return kinds[0], optional


@dataclass(frozen=True)
class Params:
    """Base of every method's parameter record; ``label`` prefixes its error messages (``DKD beta -1 ...``)."""

    label: ClassVar[str] = ""

    @classmethod
    def info(cls) -> dict[str, ParamInfo]:
        hints = typing.get_type_hints(cls)
        out: dict[str, ParamInfo] = {}
        for f in dataclasses.fields(cls):
            kind, optional = _number_type(hints[f.name])
            m = f.metadata
            out[f.name] = ParamInfo(
                f.name, kind, optional, f.default, m.get("help", ""), m.get("range", Range()),
                m.get("default_text"), m.get("short"), tuple(m.get("tune", ())),
            )  # fmt: skip
        return out

    @classmethod
    def build(cls, method: str, overrides: dict[str, Any] | None = None) -> Params:
        """The defaults updated with ``overrides`` (``None``: keep the default), checked.

        A parameter the method does not take is refused, so a typo never silently does nothing.
        """
        info = cls.info()
        values: dict[str, Any] = {}
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key not in info:
                allowed = ", ".join(sorted(info)) or "none"
                raise ReffAKDError(f"method {method} takes no parameter {key!r}; its parameters: {allowed}")
            values[key] = value
        params = cls(**values)
        params.validate()
        return params

    def validate(self) -> None:
        for name, p in self.info().items():
            value = getattr(self, name)
            if value is None and p.optional:
                continue
            where = f"{self.label}{name} {value!r}"
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ReffAKDError(f"{where} must be a number")
            if p.type is int and int(value) != value:
                raise ReffAKDError(f"{where} is out of range: it must be a whole number, {p.range.text()}")
            if not p.range.contains(float(value)):
                raise ReffAKDError(f"{self.label}{name} {value} is out of range: it must {p.range.requirement()}")
        self.check()

    def check(self) -> None:
        """Checks across fields, beyond each field's range (none by default)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            name: (p.type(getattr(self, name)) if getattr(self, name) is not None else None)
            for name, p in self.info().items()
        }


@dataclass(frozen=True)
class NoParams(Params):
    """A method without parameters (cross-entropy)."""
