"""The layers' import rules, read from the source with ``ast`` (imports inside functions too).

- ``dashapp.data`` imports nothing of ``state``, ``views``, ``app`` (the composition root) or
  the UI entry points; ``dashapp.state`` imports nothing of ``views``;
- no two dashapp modules import each other, directly or around a loop (a function-level import
  is a cycle too: it only hides it until the function runs).

Imports under ``if TYPE_CHECKING:`` are for annotations only and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dashapp

PACKAGE = Path(dashapp.__file__).parent

#: layer -> the modules (prefixes) it must not import
FORBIDDEN = {
    "dashapp.data": (
        "dashapp.state",
        "dashapp.views",
        "dashapp.app",
        "dashapp.cli",
        "dashapp.jupyter",
        "dashapp.cluster",
        "dashapp.provenance",
    ),
    "dashapp.state": ("dashapp.views", "dashapp.app", "dashapp.cli", "dashapp.jupyter"),
    "dashapp.errors": ("dashapp.",),
    "dashapp.settings": ("dashapp.",),
}


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skip.update(id(n) for n in ast.walk(child))
    return skip


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The dashapp modules ``name`` imports, anywhere in its file."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_names(package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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


def _in(module: str, prefix: str) -> bool:
    return module == prefix.rstrip(".") or module.startswith(prefix.rstrip(".") + ".")


def test_layers_import_only_downwards():
    graph = import_graph()
    wrong = [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items())
        for layer, forbidden in FORBIDDEN.items()
        if _in(module, layer)
        for target in sorted(targets)
        if any(_in(target, f) for f in forbidden)
    ]
    assert wrong == []


def test_no_import_cycles_between_dashapp_modules():
    # the package __init__ files re-export their modules: package -> module edges are
    # part of the graph, so `from ..data import X` inside dashapp.data would show as a cycle
    assert cycles(import_graph()) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "dashapp"
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # a function-level import closing a loop is found
        (
            {
                "__init__.py": "",
                "data/__init__.py": "",
                "data/chunks.py": "def f():\n    from .pyramid import halve\n",
                "data/pyramid.py": "from .chunks import f\n",
            },
            [["dashapp.data.chunks", "dashapp.data.pyramid"]],
        ),
        # a longer loop through an absolute import
        (
            {
                "__init__.py": "",
                "app.py": "def f():\n    from .views.app import X\n",
                "views/__init__.py": "",
                "views/app.py": "from . import cluster\n",
                "views/cluster.py": "import dashapp.jupyter\n",
                "jupyter.py": "from .app import SCRIPT\n",
            },
            [["dashapp.app", "dashapp.jupyter", "dashapp.views.app", "dashapp.views.cluster"]],
        ),
        # annotations only: no cycle
        (
            {
                "__init__.py": "",
                "a.py": (
                    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n"
                ),
                "b.py": "from . import a\n",
            },
            [],
        ),
    ],
)
def test_the_cycle_finder_finds_cycles(tmp_path, files, expected):
    pkg = _write(tmp_path, files)
    assert cycles(import_graph(pkg)) == expected


def test_the_layer_rule_sees_a_data_module_importing_state(tmp_path):
    pkg = _write(
        tmp_path,
        {
            "__init__.py": "",
            "data/__init__.py": "",
            "data/x.py": "def f():\n    from ..state.slice import SliceState\n",
            "state/__init__.py": "",
            "state/slice.py": "",
        },
    )
    assert "dashapp.state.slice" in import_graph(pkg)["dashapp.data.x"]
