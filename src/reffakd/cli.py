"""``reffakd`` command line: the parser generated from ``runconfig``'s tree; flags win over ``--config``, which wins
over the defaults. The argparse namespace never leaves this module; a user's mistake is one line and exit 1."""

from __future__ import annotations

import argparse
import re
import shlex
import signal
import sys
import threading
import typing
from collections.abc import Sequence
from typing import Any

from .distillers.registry import cli_catalog
from .engine.signals import TrainingInterrupted
from .errors import ReffAKDError
from .io import usable_streams
from .runconfig import COMMANDS, CONFIG_COMMANDS, EXCLUSIVE, ConfigSpec, Resolved, command_options, defaults
from .settings import add_flags, normalise_keys, read_mapping, read_value, to_yaml, unknown_key
from .version import __version__

# Keys the command line must end up with (from a flag or from --config); one error line naming the flags if absent.
REQUIRED = {"run": ("out",), "softlabels": ("out",), "train": ("out",), "compare": ("out",), "sweep": ("out",),
            "evaluate": ("checkpoint",), "export": ("out", "checkpoint"), "predict": ("checkpoint",)}  # fmt: skip


class Parser(argparse.ArgumentParser):
    """argparse whose mistakes are ``ReffAKDError``s (one line, exit 1), not a usage block and exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        raise ReffAKDError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """One sub-command per ``runconfig.COMMANDS`` entry, one argument group per configuration group."""
    parser = Parser(prog="reffakd", description="Knowledge distillation without a teacher network.")
    parser.add_argument("--version", action="version", version=f"reffakd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    exclusive = {key for pair in EXCLUSIVE for key in pair}
    for name, (help, groups) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        if name in CONFIG_COMMANDS:
            p.add_argument("--config", metavar="FILE.yaml", default=argparse.SUPPRESS,
                           help="YAML file of options: keys are the long option names (epochs: 30, ae_epochs: 5); "
                                "options given on the command line win (docs/CONFIG.md)")  # fmt: skip
        for g in groups:
            group = p.add_argument_group(g.title)
            opts = g.options()
            add_flags(group, [o for o in opts if o.key not in exclusive])
            if any(o.key in exclusive for o in opts):
                add_flags(group.add_mutually_exclusive_group(), [o for o in opts if o.key in exclusive])
    p = sub.add_parser("config", help="print a command's resolved config as YAML, without running it")
    p.add_argument("action", choices=["show"])
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="COMMAND [OPTIONS]",
                   help=f"one of {', '.join(CONFIG_COMMANDS)} and its options, --config included")  # fmt: skip
    sub.add_parser("methods", help="the registered methods: soft targets, parameters, flags (docs/METHODS.md)")
    return parser


def read_config(command: str, path: str, given: dict[str, Any]) -> tuple[dict[str, Any], ConfigSpec | None]:
    """The option values of ``--config``, each checked as its flag would be, and (compare, sweep) its spec sections: a
    spec key with a mapping or list value (``teacher: PATH``, a plain value of an option, is that option)."""
    from .spec import RunSpec

    where = f"config {path}"
    data = normalise_keys(read_mapping(path, where), where)
    opts = command_options(command)
    spec_keys = list(RunSpec.__dataclass_fields__) if command in ("compare", "sweep") else []
    sections = {k: v for k, v in data.items() if k in spec_keys and (k not in opts or isinstance(v, (dict, list)))}
    values = {}
    for key, value in data.items():
        if key in sections:
            continue
        if key not in opts:
            raise unknown_key(where, key, [*opts, *(k for k in spec_keys if k not in opts)])
        values[key] = read_value(opts[key], value, where)
    for pair in EXCLUSIVE:
        in_file = [k for k in pair if values.get(k) is not None]
        if len(in_file) > 1:
            raise ReffAKDError(f"{where}: keys {in_file[0]!r} and {in_file[1]!r} exclude each other; give one")
        if any(k in given for k in pair):  # the command line chose one of them: the file's other one goes
            values = {k: v for k, v in values.items() if k not in pair}
    spec = ConfigSpec(where, sections, after_spec="spec" in given) if sections else None
    return values, spec


def parse_command(argv: Sequence[str], require: bool = True) -> Resolved | argparse.Namespace:
    """The command line and ``--config`` as one typed configuration; ``require``: the required options must be there
    (``config show`` does not require them)."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if args.command in ("config", "methods"):
        return args
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    values, spec = (read_config(args.command, args.config, given)) if hasattr(args, "config") else ({}, None)
    resolved = Resolved(args.command, {**defaults(args.command), **values, **given}, list(argv), spec)
    missing = [f"--{k.replace('_', '-')}" for k in REQUIRED.get(args.command, ()) if resolved.values.get(k) is None]
    if require and missing:
        raise ReffAKDError(f"reffakd {args.command}: the following arguments are required: {', '.join(missing)} "
                           "(on the command line or in --config)")  # fmt: skip
    return resolved


def config_text(cfg: Resolved, checked: Any) -> str:
    """The resolved config as YAML (``checked``: what ``check_command`` returned), headed by the command line."""
    from .runconfig import resolved_config

    resumes = cfg.command in ("compare", "sweep")
    again = "the same out: resumes" if resumes else "give --out NEW: a run folder is never reused"
    header = [
        f"reffakd {__version__}: resolved config of `reffakd {shlex.join(cfg.argv)}`",
        f"run it again with: reffakd {cfg.command} --config THIS_FILE ({again})",
    ]
    return to_yaml(resolved_config(cfg, checked), header)


def run(cfg: Resolved) -> int:
    """Run the command; its exit status (0 unless it says otherwise: predict with an unreadable image)."""
    from . import commands
    from .reports import plots_off
    from .runconfig import check_command

    checked = check_command(cfg)  # the command's spec (softlabels: its soft-label config), validated
    text = config_text(cfg, checked)
    with plots_off(bool(cfg.values.get("no_plots"))):  # commands that draw nothing have no --no-plots
        return commands.HANDLERS[cfg.command](cfg, text, checked) or 0


def show_config(args: argparse.Namespace) -> None:
    """``reffakd config show COMMAND [OPTIONS]``: print what COMMAND would run with; writes nothing."""
    from .runconfig import check_command

    if args.rest and args.rest[0] in ("-h", "--help"):
        build_parser().parse_args(["config", "--help"])  # prints the help and exits 0, like every --help
    if not args.rest or args.rest[0] not in CONFIG_COMMANDS:
        got = f" {args.rest[0]!r}" if args.rest else ""
        raise ReffAKDError(
            f"config show needs a command{got}: one of {', '.join(CONFIG_COMMANDS)}, "
            "e.g. reffakd config show train --config my.yaml"
        )
    inner = parse_command(args.rest, require=False)
    assert isinstance(inner, Resolved)
    print(config_text(inner, check_command(inner)), end="")


def as_flags(exc: ReffAKDError) -> str:
    """The error's message with the library parameters it names written as their flags (val_size -> --val-size)."""
    text = str(exc)
    for param in exc.params:
        # not inside a path (``/tmp/out.partial``): no "/" or "." either side
        text = re.sub(
            rf"(?<![\w\-/.])(?<!the )(?<!this ){re.escape(param)}\b(?![/-]|\.\w)", "--" + param.replace("_", "-"), text
        )
    return text


def continue_advice(cfg: Resolved) -> str:
    """The exact command that continues an interrupted ``cfg``: compare and sweep as they were; the one-folder commands
    with ``--resume``, once their ``OUT.partial`` exists."""
    from pathlib import Path

    from .rundir import partial_path

    again = f"reffakd {shlex.join(cfg.argv)}"
    if cfg.command in ("compare", "sweep"):
        return f"continue with the same command: {again}"
    out = cfg.values.get("out")
    if not out or not partial_path(Path(out)).is_dir():  # evaluate has no folder
        return "nothing was kept; run the command again"
    return f"continue with: {again}" + ("" if cfg.values.get("resume") else " --resume")


def os_error_line(exc: OSError, cfg: Resolved | argparse.Namespace | None) -> str:
    """An operating-system error as a user's: what failed on which file, and what was kept (every write is atomic)."""
    import errno

    what = exc.strerror or type(exc).__name__
    files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    line = f"{what}: {files}" if files else what
    if exc.errno == errno.ENOSPC:
        line += "; free some space"
    if isinstance(cfg, Resolved):
        advice = continue_advice(cfg)
        if not advice.startswith("nothing"):
            line += f"; then {advice}" if exc.errno == errno.ENOSPC else f"; the run so far is kept: {advice}"
        elif exc.errno == errno.ENOSPC and cfg.command != "evaluate":  # nothing kept: the same command starts afresh
            line += f"; then run the same command again: reffakd {shlex.join(cfg.argv)}"
    return line


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training (loading, testing, writing): stop like Ctrl-C does, with a message, not silently."""

    exit_code = 128 + signal.SIGTERM


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated("terminated by SIGTERM")


def main(argv: Sequence[str] | None = None) -> int:
    usable_streams()  # 2>&-, | head -1, LC_ALL=C: every message and progress bar can be written (io.usable_streams)
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed: Resolved | argparse.Namespace | None = None
    previous = (
        signal.signal(signal.SIGTERM, _terminated) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        parsed = parse_command(argv)
        if isinstance(parsed, Resolved):
            return run(parsed)
        elif parsed.command == "config":
            show_config(parsed)
        else:
            print(cli_catalog()["table"])
    except ReffAKDError as exc:
        print(f"reffakd: error: {as_flags(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permission, name too long...: the user's to fix, in one line
        print(f"reffakd: error: {os_error_line(exc, parsed)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # in training its resume checkpoint is written; elsewhere nothing is half-written
        advice = f"; {continue_advice(parsed)}" if isinstance(parsed, Resolved) else ""
        what = exc if isinstance(exc, (TrainingInterrupted, Terminated)) else "interrupted"
        print(f"reffakd: {what}{advice}", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
