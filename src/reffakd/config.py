"""YAML config files for the command line, with the argparse parser as their only schema.

A config file is a mapping whose keys are a command's long option names (``epochs: 30``,
``soft_labels: PATH``, ``ae-epochs: 5``). Each key is checked by the parser's own action for that
option: its dest, its type function, its choices, and whether it is a flag, so a new option is a
new config key without any second list to keep in step. Options given on the command line win
over the file, which wins over the defaults. Files are read with ``yaml.safe_load`` only.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ReffAKDError

CONFIG_DEST = "config"


def comma_list(fn: Callable[[str], Any]) -> Callable[[str], Any]:
    """Mark an argparse type that reads a comma-separated list, so a YAML list is accepted for it too."""
    fn.comma_list = True  # type: ignore[attr-defined]
    return fn


# --------------------------------------------------------------------------- reading files


def read_mapping(path: str | Path, where: str) -> dict[str, Any]:
    """A JSON (``.json``) or YAML file holding a mapping; an empty YAML file is an empty mapping."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReffAKDError(
            f"{where} cannot be read ({exc.strerror if isinstance(exc, OSError) and exc.strerror else exc})"
        ) from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ReffAKDError(f"{where} is not valid JSON ({exc})") from None
        kind = "a JSON object"
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ReffAKDError(f"{where} is not valid YAML ({_yaml_problem(exc)})") from None
        data = {} if data is None else data
        kind = "a YAML mapping of keys to values"
    if not isinstance(data, dict):
        raise ReffAKDError(f"{where} must hold {kind}, got {_kind(data)}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ReffAKDError(f"{where}: key {bad[0]!r} is not a name")
    return data


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


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


# --------------------------------------------------------------------------- the parser as schema


def schema(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """dest -> action of every option a config may set (not help, version, or --config itself)."""
    out: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if (
            action.dest in (argparse.SUPPRESS, CONFIG_DEST, "help")
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
            or not action.option_strings
        ):
            continue
        out[action.dest] = action
    return out


def _flag_kind(action: argparse.Action) -> str:
    if isinstance(action, argparse.BooleanOptionalAction):
        return "optional-bool"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "bool"
    if isinstance(action, argparse._AppendAction):
        return "append"
    return "value"


def convert(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    """``value`` from a file, checked and converted exactly as argparse would convert the option's text."""
    bad = lambda why: ReffAKDError(f"{where}: key {key!r}: {why}")  # noqa: E731
    kind = _flag_kind(action)
    if kind in ("bool", "optional-bool"):
        if isinstance(value, bool) or (value is None and kind == "optional-bool"):
            return value
        raise bad(f"expected true or false{' or null' if kind == 'optional-bool' else ''}, got {value!r}")
    if value is None:
        if action.default is None or kind == "append":
            return None
        raise bad(f"null is not allowed; expected {_expected(action)}")
    if kind == "append" or action.nargs in ("+", "*") or isinstance(action.nargs, int):
        items = value if isinstance(value, list) else [value]
        return [_one(action, key, v, where) for v in items]
    if isinstance(value, list) and getattr(action.type, "comma_list", False):
        value = ",".join(_text(action, key, v, where) for v in value)
    return _one(action, key, value, where)


def _expected(action: argparse.Action) -> str:
    if action.choices is not None:
        return "one of " + ", ".join(map(str, action.choices))
    return getattr(action.type, "__name__", "a string").lstrip("_") if action.type is not None else "a string"


def _text(action: argparse.Action, key: str, value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ReffAKDError(f"{where}: key {key!r}: expected {_expected(action)}, got {_kind(value)} {value!r}")
    return value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)


def _one(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    text = _text(action, key, value, where)
    converted: Any = text
    if action.type is not None:
        try:
            converted = action.type(text)
        except argparse.ArgumentTypeError as exc:
            raise ReffAKDError(f"{where}: key {key!r}: {exc}") from None
        except (TypeError, ValueError):
            name = getattr(action.type, "__name__", repr(action.type))
            raise ReffAKDError(f"{where}: key {key!r}: invalid {name} value {text!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise ReffAKDError(
            f"{where}: key {key!r}: invalid choice {converted!r} (choose from {', '.join(map(str, action.choices))})"
        )
    return converted


# --------------------------------------------------------------------------- which options were typed


def given_dests(make_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str]) -> set[str]:
    """The dests the command line set explicitly: parse again with every default suppressed."""
    parser = make_parser()
    for p in _parsers(parser):
        p._defaults.clear()
        for action in p._actions:
            action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(list(argv))))


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                out += _parsers(sub)
    return out


def subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise KeyError(command)


def exclusive_groups(parser: argparse.ArgumentParser) -> list[list[str]]:
    return [[a.dest for a in g._group_actions] for g in parser._mutually_exclusive_groups]


def apply_config(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    values: Mapping[str, Any],
    given: set[str],
    where: str,
) -> None:
    """Set each file value that the command line did not set; mutually exclusive options stay exclusive."""
    for group in exclusive_groups(parser):
        in_file = [d for d in group if values.get(d) is not None]
        if len(in_file) > 1:
            raise ReffAKDError(f"{where}: keys {in_file[0]!r} and {in_file[1]!r} exclude each other; give one")
        if any(d in given for d in group):  # the command line chose one of them: the file's other one goes
            values = {k: v for k, v in values.items() if k not in group or k in given}
    for dest, value in values.items():
        if dest not in given:
            setattr(args, dest, value)


def check_values(
    parser: argparse.ArgumentParser, data: Mapping[str, Any], where: str, extra: Iterable[str] = ()
) -> dict[str, Any]:
    """Every key known (an option, or one of ``extra``), every option's value converted; returns the options' values."""
    actions = schema(parser)
    extra = list(extra)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in actions:
            out[key] = convert(actions[key], key, value, where)
        elif key not in extra:
            raise unknown_key(where, key, [*actions, *(e for e in extra if e not in actions)])
    return out


# --------------------------------------------------------------------------- writing


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
        json_safe(dict(config)),
        Dumper=Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1000,
    )
    return "".join(f"# {line}\n" for line in header) + body
