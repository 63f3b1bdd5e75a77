"""Typed options: one dataclass field (``opt``) is one command-line flag and one config-file key, its type annotation
how both are read (``add_flags``, ``read_value``), so the two never drift apart. Files: ``yaml.safe_load`` or JSON."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ReffAKDError


def opt(
    default: Any = None,
    help: str = "",
    *,
    flag: str | None = None,
    short: str | None = None,
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None,
    negate: bool = False,
    metavar: str | None = None,
    append: bool = False,
    positional: bool = False,
) -> Any:
    """A typed option; ``flag``: its long name when not the field's; ``negate``: a flag that sets the field to False
    (``--no-download``); ``append``: a list whose flag is repeated (``--vary a=1,2 --vary b=3``); ``positional``: a
    list of plain arguments (``predict a.png b.png``), required (its default is never read)."""
    meta = {"help": help, "flag": flag, "short": short, "choices": choices, "negate": negate, "metavar": metavar,
            "append": append, "positional": positional}  # fmt: skip
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Option:
    """One flag/key: where it lands (``field`` of its dataclass), how it is spelled and read."""

    field: str
    key: str  # the config key and the namespace dest: the long flag with "-" -> "_"
    kind: type  # int, float, str, bool, or list (comma-separated)
    item: type  # the element type of a list, else ``kind``
    optional: bool  # None allowed
    default: Any
    help: str
    short: str | None = None
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    negate: bool = False
    metavar: str | None = None
    append: bool = False
    positional: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def value(self, key_value: Any) -> Any:
        """The field's value from the key's (a negated flag's True is the field's False)."""
        return (not key_value) if self.negate and key_value is not None else key_value


def _unwrap(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), len(args) < len(typing.get_args(tp))
    return tp, False


def options(cls: type, prefix: str = "", defaults: Mapping[str, Any] | None = None) -> list[Option]:
    """The options of a dataclass's ``opt`` fields; ``prefix`` makes the keys unique (``ae_epochs``)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        m = f.metadata
        tp, optional = _unwrap(hints[f.name])
        kind, item = (list, typing.get_args(tp)[0]) if typing.get_origin(tp) in (tuple, list) else (tp, tp)
        default = (defaults or {}).get(f.name, f.default)
        key = prefix + (m["flag"] or f.name).replace("-", "_")
        shown = (not default) if m["negate"] else default
        out.append(Option(f.name, key, kind, item, optional, shown, **{k: v for k, v in m.items() if k != "flag"}))
    return out


# --------------------------------------------------------------------------- the command line


def choices_of(o: Option) -> list[Any] | None:
    """An option's choices; a callable (a registry's names) is asked each time, so late registrations count."""
    if o.choices is None:
        return None
    return list(o.choices()) if callable(o.choices) else list(o.choices)


def _flag_type(o: Option) -> Callable[[str], Any]:
    if o.kind is list:

        def parse_list(text: str) -> list[Any]:
            try:
                return [o.item(x.strip()) for x in text.split(",") if x.strip()]
            except ValueError:
                what = {int: "integers, e.g. 0,1,2", float: "numbers, e.g. 0.1,0.5"}.get(o.item, "names, e.g. a,b")
                raise argparse.ArgumentTypeError(f"{text!r} must be comma-separated {what}") from None

        return parse_list
    return o.kind


def add_flags(parser: argparse.ArgumentParser | Any, opts: Iterable[Option]) -> None:
    """argparse options for ``opts``, every default suppressed: the namespace holds what was typed."""
    for o in opts:
        if o.positional:
            parser.add_argument(o.key, nargs="+", default=argparse.SUPPRESS, metavar=o.metavar, help=o.help)
            continue
        names = [o.short, o.flag] if o.short else [o.flag]
        shown = o.default is not None and o.default != "" and o.kind is not bool
        default_text = f" (default: {o.default})" if shown else ""
        kw: dict[str, Any] = {"dest": o.key, "default": argparse.SUPPRESS, "help": o.help + default_text}
        if o.append:
            kw.update(action="append", type=str, metavar=o.metavar)
        elif o.kind is bool and o.optional:
            kw["action"] = argparse.BooleanOptionalAction
        elif o.kind is bool:
            kw["action"] = "store_true"
        else:
            kw.update(type=_flag_type(o), metavar=o.metavar)
            if o.choices is not None:
                kw["choices"] = choices_of(o)
        parser.add_argument(*names, **kw)


# --------------------------------------------------------------------------- config files

MAX_FILE_BYTES = 1 << 20  # a config or spec file: options and short lists
MAX_VALUES = 100_000  # values once YAML aliases are expanded (an alias bomb is billions)
MAX_DEPTH = 50
YAML_NUMBER_HINT = " (YAML reads 1e-3 or 1.5e4 as text: write 1.0e-3 or 1.5e+4)"


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _text(o: Option, value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        expected = "one of " + ", ".join(map(str, choices_of(o))) if o.choices else o.item.__name__
        raise ReffAKDError(f"{where}: key {o.key!r}: expected {expected}, got {_kind(value)} {short(value)}")
    return value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)


def read_value(o: Option, value: Any, where: str) -> Any:
    """A config-file value, checked and converted exactly as the flag's text would be."""
    bad = lambda why: ReffAKDError(f"{where}: key {o.key!r}: {why}")  # noqa: E731
    if o.kind is bool:
        if isinstance(value, bool) or (value is None and o.optional):
            return value
        raise bad(f"expected true or false{' or null' if o.optional else ''}, got {short(value)}")
    if value is None:
        if o.optional:
            return None
        raise bad(f"null is not allowed; expected {o.item.__name__}")
    if o.kind is not list:
        text = _text(o, value, where)
    else:  # a list, or one value: its items, each as a flag's text would hold it
        items = [_text(o, v, where) for v in (value if isinstance(value, list) else [value])]
        if o.append:
            return items
        text = ",".join(items)
    try:
        converted = _flag_type(o)(text)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise bad(str(exc) if o.kind is list else f"invalid {o.kind.__name__} value {text!r}") from None
    if o.choices is not None and converted not in choices_of(o):
        raise bad(f"invalid choice {converted!r} (choose from {', '.join(map(str, choices_of(o)))})")
    return converted


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def yaml_hint(value: Any) -> str:
    """Point at YAML 1.1's rule when a number like 1e-3 (no dot) arrived as text."""
    number = isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip())
    return YAML_NUMBER_HINT if number else ""


def _fits(value: Any, tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_fits(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp in (int, float):  # a float takes any number, an int a whole one (never a boolean)
        return is_number(value) and (tp is float or isinstance(value, int))
    if typing.get_origin(tp) in (tuple, list):
        return isinstance(value, (list, tuple)) and all(_fits(v, typing.get_args(tp)[0]) for v in value)
    return not isinstance(tp, type) or isinstance(value, tp)


def check_types(cls: type, section: Mapping[str, Any], what: str) -> None:
    """Each known key of a spec section has its dataclass field's type, strictly: a spec is data (no text read as a
    number, unlike a flag's; ``1e-3`` as text is YAML 1.1's trap, named in the message)."""
    hints = typing.get_type_hints(cls)
    for key, value in section.items():
        if key in hints and not _fits(value, hints[key]):
            expected = str(hints[key]).replace("typing.", "").replace("<class '", "").replace("'>", "")
            raise ReffAKDError(f"{what} {key} {short(value)} has the wrong type: expected {expected}{yaml_hint(value)}")


def check_section(name: str, section: Any, where: str, keys: Sequence[str], cls: type | None = None) -> None:
    """A spec section's ``keys`` and, with its dataclass ``cls``, their types: one line, never a silent default."""
    if not isinstance(section, dict):
        raise ReffAKDError(f"{where}: {name} must be an object of keys to values, got {type(section).__name__}")
    for key in section:
        if key not in keys:
            raise unknown_key(f"{where}: {name}", str(key), keys)
    if cls is not None:
        check_types(cls, section, f"{where}: {name}")


def read_mapping(path: str | Path, where: str) -> dict[str, Any]:
    """A JSON (``.json``) or YAML file holding a mapping; an empty YAML file is an empty mapping."""
    import yaml

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ReffAKDError(f"{where} is {size:,} bytes; a config or spec file may hold at most {MAX_FILE_BYTES:,}")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ReffAKDError(f"{where} cannot be read ({reason})") from None
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ReffAKDError(f"{where} is not valid {'JSON' if is_json else 'YAML'} ({_parse_problem(exc)})") from None
    data = {} if data is None and not is_json else data
    if not isinstance(data, dict):
        raise ReffAKDError(f"{where} must hold {'a JSON object' if is_json else 'a YAML mapping of keys to values'}, "
                           f"got {_kind(data)}")  # fmt: skip
    values = expanded_size(data)
    if values > MAX_VALUES:
        raise ReffAKDError(
            f"{where} expands to more than {MAX_VALUES:,} values (YAML aliases repeat what they name); "
            "a config or spec holds options and short lists"
        )
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ReffAKDError(f"{where}: key {bad[0]!r} is not a name")
    return data


def expanded_size(value: Any, limit: int = MAX_VALUES) -> int:
    """How many values ``value`` holds once its YAML aliases are written out, each shared node sized once, stopping past
    ``limit``: an alias bomb's billions are never built."""
    memo: dict[int, int] = {}

    def size(v: Any, depth: int) -> int:
        if not isinstance(v, (dict, list)):
            return 1
        if id(v) in memo:
            return memo[id(v)]
        if depth > MAX_DEPTH:
            return limit + 1
        items = list(v.keys()) + list(v.values()) if isinstance(v, dict) else v
        total = 1
        for item in items:
            total += size(item, depth + 1)
            if total > limit:
                break
        memo[id(v)] = total
        return total

    return size(value, 0)


def short(value: Any) -> str:
    """``repr`` cut to a line: an error message never prints a whole (possibly huge) value."""
    import reprlib

    r = reprlib.Repr()
    r.maxlist = r.maxdict = r.maxtuple = 8
    r.maxstring = r.maxother = 80
    r.maxlevel = 3
    return r.repr(value)


def _parse_problem(exc: Exception) -> str:
    """A YAML error's problem with its line and column; a JSON error's first line already holds them."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


_NOTED: set[str] = set()


def deprecated(where: str, old: str, new: str) -> None:
    """One line, once per process, for a key read under its old name."""
    line = f"reffakd: note: {where}: key {old!r} is now {new!r} (the old name is still read)"
    if line not in _NOTED:
        _NOTED.add(line)
        print(line, file=sys.stderr)


def unknown_key(where: str, key: str, allowed: Iterable[str]) -> ReffAKDError:
    """One line naming the key, the closest allowed one, and all of them."""
    allowed = list(allowed)
    close = difflib.get_close_matches(key.replace("-", "_"), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ReffAKDError(f"{where}: unknown key {key!r}{hint}; allowed: {', '.join(allowed)}")


def normalise_keys(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``ae-epochs`` and ``ae_epochs`` are the same key; giving both is a mistake, not a silent choice."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        norm = key.replace("-", "_")
        if norm in out:
            raise ReffAKDError(f"{where}: key {norm!r} is given twice (as {key!r} and another spelling)")
        out[norm] = value
    return out


def json_safe(value: Any) -> Any:
    """Plain YAML/JSON data: tuples become lists, paths strings; non-finite floats are refused as bugs."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"non-finite value {value!r} in a config")
    return value


def to_yaml(config: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """Block style for mappings, ``[a, b]`` for lists of plain values; ``# `` comment lines first."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def sequence(dumper: yaml.SafeDumper, data: list) -> Any:
        flat = all(not isinstance(v, (list, dict)) for v in data)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)

    Dumper.add_representer(list, sequence)
    body = yaml.dump(
        json_safe(dict(config)), Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
        width=1000,
    )  # fmt: skip
    return "".join(f"# {line}\n" for line in header) + body
