"""Wall seconds of the command line's instant commands: help, ``reffakd methods`` and an argument error, beside
``python -c pass`` and ``import torch`` (issue 26: they must not import torch).

Each command is a fresh process, run ``--runs`` times in turn with the others (so a burst of load hits them all
alike); the table gives the median and the spread (min-max). Times whatever ``reffakd`` is on PYTHONPATH, so two
trees are compared on the same machine by running it once with each:

    PYTHONPATH=/tmp/wt-old/src python benchmarks/startup.py --label before
    PYTHONPATH=src python benchmarks/startup.py --label after
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

REFFAKD = [sys.executable, "-m", "reffakd"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
    "reffakd --help": [*REFFAKD, "--help"],
    "reffakd train --help": [*REFFAKD, "train", "--help"],
    "reffakd methods": [*REFFAKD, "methods"],
    "reffakd train --bogus (argument error)": [*REFFAKD, "train", "--bogus"],
}


def seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():
        seconds(argv)  # one untimed run: the files are in the page cache for every timed one
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            times[name].append(seconds(argv))
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"PYTHONPATH={os.environ.get('PYTHONPATH', '')} {args.label}".rstrip()
    )
    print(f"\n| command | median s ({args.runs} runs) | min-max s |\n|---|---|---|")
    for name, values in times.items():
        print(f"| `{name}` | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} |")


if __name__ == "__main__":
    main()
