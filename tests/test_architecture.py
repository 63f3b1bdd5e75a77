"""The package's import graph has no cycle, and no import runs up the floors of docs/ARCHITECTURE.md.

A cycle makes the import order matter (a name is missing when the cycle is entered from the other
side) and hides which module a concept lives in. Every import counts, wherever it is written: at
module level, inside a function, or under ``if TYPE_CHECKING:``; a deferred import only postpones
the cycle, it does not remove the dependency.

The graph: one node per module, a package's ``__init__`` being the package's own node. ``import a.b``
and ``from a.b import c`` are edges to ``a.b``, and to ``a.b.c`` instead when ``c`` is a module
(``from . import dataset``); a lazy package's ``exports(__name__, {"config": ...})`` is an edge to each module
it names. The parent packages Python imports on the way are not edges: else a
package's ``__init__`` importing its submodules would always close a cycle. A submodule that imports
a name from its own package (``from . import DataSplits``, ``from reffakd.data import ...``) does
close one, and that is reported.

The floors are read from the table in docs/ARCHITECTURE.md (``| N name | `module.py`, `package/` | ...``), so the
document and the code cannot drift apart: a module imports only from its own floor or those below it, and a new
top-level module must be given a floor there. The package itself and ``__main__`` are the entry, above every floor.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ARCHITECTURE = SRC.parent / "docs" / "ARCHITECTURE.md"
ENTRY = ("", "__main__")  # the package's own __init__ and ``python -m reffakd``: above every floor


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages under ``root``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in ``path`` of a module in ``modules``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "exports":  # a lazy package's names
            targets = [f"{package}.{key.value}" for key in node.args[1].keys if isinstance(key, ast.Constant)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target in modules and target != name:
                yield target, node.lineno


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """Module -> {module it imports: line of the first such import}."""
    modules = module_files(root)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for target, line in imports_of(name, path, modules):
            edges.setdefault(target, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def one_loop(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v]):
            if w == start:
                return [*paths[v], start]
            if w in members and w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError(f"{component} is not strongly connected")


def describe(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    loop = one_loop(graph, component)
    steps = " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(loop, loop[1:]))
    return f"cycle among {', '.join(component)}; for example {steps} -> {loop[-1]}"


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph(SRC)
    assert "reffakd.data" in graph and "reffakd.data.config" in graph["reffakd.data"]
    found = cycles(graph)
    message = "import cycles:\n" + "\n".join(describe(graph, c) for c in found)
    assert not found, message


def floors(doc: str) -> dict[str, int]:
    """Top-level module or package of the package -> its floor, from the floors table's rows."""
    found = {}
    for number, modules in re.findall(r"^\| (\d+) [^|]*\| ([^|]*) \|", doc, flags=re.MULTILINE):
        for name in re.findall(r"`([\w]+)(?:\.py|/)`", modules):
            found[name] = int(number)
    return found


def upward_imports(graph: dict[str, dict[str, int]], floor_of: dict[str, int]) -> list[str]:
    """Each import of a module from a higher floor, as one line; a module outside the table is one line too."""
    top = max(floor_of.values()) + 1

    def floor(module: str) -> int | None:
        name = module.partition(".")[2].partition(".")[0]
        return top if name in ENTRY else floor_of.get(name)

    found = []
    for module, edges in sorted(graph.items()):
        here = floor(module)
        if here is None:
            found.append(f"{module} has no floor: add it to the floors table in docs/ARCHITECTURE.md")
            continue
        for target, line in sorted(edges.items()):
            there = floor(target)
            if there is not None and there > here:
                found.append(f"{module} (floor {here}, line {line}) imports {target} (floor {there})")
    return found


def test_no_import_runs_up_the_floors() -> None:
    floor_of = floors(ARCHITECTURE.read_text(encoding="utf-8"))
    assert floor_of["errors"] == 0 and floor_of["data"] == 1 and floor_of["engine"] == 2 and floor_of["cli"] == 7
    found = upward_imports(import_graph(SRC), floor_of)
    assert not found, "imports running up the floors:\n" + "\n".join(found)


def test_an_import_from_a_higher_floor_is_reported(tmp_path: Path) -> None:
    """The old loader's deferred import of the engine (floor 1 -> floor 2), and a module the table lacks."""
    doc = "| floor | modules |\n|---|---|\n| 1 data | `data/` | ... |\n| 2 engine | `engine/`, `speed.py` | ... |\n"
    root = write(
        tmp_path,
        {
            "pkg/__init__.py": "from .engine import fit\n",
            "pkg/data/__init__.py": "",
            "pkg/data/loader.py": "def batches():\n    from ..engine.cudagraph import Recorded\n",
            "pkg/engine/__init__.py": "from .trainer import fit\n",
            "pkg/engine/trainer.py": "from ..data import loader\nfrom .. import speed\n",
            "pkg/engine/cudagraph.py": "",
            "pkg/speed.py": "",
            "pkg/extra.py": "",
        },
    )
    assert floors(doc) == {"data": 1, "engine": 2, "speed": 2}
    assert upward_imports(import_graph(root), floors(doc)) == [
        "pkg.data.loader (floor 1, line 2) imports pkg.engine.cudagraph (floor 2)",
        "pkg.extra has no floor: add it to the floors table in docs/ARCHITECTURE.md",
    ]


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_package_importing_its_submodules_is_no_cycle(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "pkg/__init__.py": "from .data import DataConfig\n",
            "pkg/data/__init__.py": "from .config import DataConfig\nfrom . import dataset\n",
            "pkg/data/config.py": "from .dataset import Split\nfrom . import dataset\nimport pkg.data.dataset\n",
            "pkg/data/dataset.py": "from ..errors import Error\n",
            "pkg/errors.py": "import os\n",
        },
    )
    graph = import_graph(root)
    assert graph == {
        "pkg": {"pkg.data": 1},
        "pkg.data": {"pkg.data.config": 1, "pkg.data.dataset": 2},
        "pkg.data.config": {"pkg.data.dataset": 1},
        "pkg.data.dataset": {"pkg.errors": 1},
        "pkg.errors": {},
    }
    assert cycles(graph) == []


@pytest.mark.parametrize(
    "back",
    [
        "from . import DataConfig\n",  # a name of the package itself
        "from pkg.data import DataConfig\n",
        "def f():\n    from .. import data\n",  # deferred: still a dependency
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.data\n",
    ],
)
def test_a_submodule_importing_its_own_package_is_a_cycle(tmp_path: Path, back: str) -> None:
    root = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/data/__init__.py": "from .config import DataConfig\n",
            "pkg/data/config.py": back,
        },
    )
    graph = import_graph(root)
    assert cycles(graph) == [["pkg.data", "pkg.data.config"]]
    assert describe(graph, ["pkg.data", "pkg.data.config"]).startswith(
        "cycle among pkg.data, pkg.data.config; for example pkg.data (line 1) -> pkg.data.config"
    )
