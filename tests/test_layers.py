"""Import layers: the engine (session, loop, store, config, methods' engine, math and records,
and every other module that is not the dashboard's) never imports plotly, streamlit, the figure
modules, views, Learn or ui; the figure modules never import methods; and no two modules import
each other, however lazily (a package and its own modules aside). Read from the source with
`ast` (lazy imports included) and checked again in a fresh interpreter's sys.modules."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pruneviz

ROOT = Path(pruneviz.__file__).parent
FRONT = ("pruneviz.plots", "pruneviz.views", "pruneviz.learn", "pruneviz.ui")
FIGURES = ("pruneviz.plots", "pruneviz.plots_compare")      # the figure kit: no method knowledge


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def is_front(name: str) -> bool:
    """The dashboard's side: figures, views, Learn, ui, and each family's view and toy."""
    return (any(name == f or name.startswith(f + ".") or name.startswith(f + "_")
                for f in FRONT) or name.endswith((".view", ".toy")))


def banned(name: str) -> bool:
    return name.split(".")[0] in ("plotly", "streamlit") or (
        name.startswith("pruneviz") and is_front(name))


def imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `source` (the module `module`) imports, at the top or inside a function;
    `from X import y` counts as X and as X.y (y may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def module_imports(name: str) -> set[str]:
    path = MODULES[name]
    return imports(path.read_text(), name, path.name == "__init__.py")


def engine_violations(sources: dict[str, str]) -> list[str]:
    """'module imports X' for every banned import of a non-front module in `sources`."""
    return sorted(f"{m} imports {x}" for m, src in sources.items() if not is_front(m)
                  for x in imports(src, m) if banned(x))


def figure_violations(sources: dict[str, str]) -> list[str]:
    return sorted(f"{m} imports {x}" for m, src in sources.items()
                  if m.startswith("pruneviz.plots")
                  for x in imports(src, m) if x.startswith("pruneviz.methods"))


def sources() -> dict[str, str]:
    return {m: p.read_text() for m, p in MODULES.items()}


def test_the_engine_never_imports_the_dashboards_side():
    engine = [m for m in MODULES if not is_front(m)]
    assert {"pruneviz.session", "pruneviz.loop", "pruneviz.records", "pruneviz.config",
            "pruneviz.store.runs", "pruneviz.methods.base", "pruneviz.methods.slr.engine",
            "pruneviz.methods.pgp.math", "pruneviz.methods.fggp.records"} <= set(engine)
    assert engine_violations(sources()) == []


def test_the_figures_never_import_methods():
    assert figure_violations(sources()) == []


@pytest.mark.parametrize("line", ["import plotly.graph_objects as go",
                                  "from ...plots import method_color",
                                  "from ... import views",
                                  "def f():\n    from ...ui.state import get_store"])
def test_an_engine_importing_the_dashboard_is_caught(line):
    assert engine_violations({"pruneviz.methods.slr.engine": line}) != []
    assert engine_violations({"pruneviz.methods.slr.view": line}) == []     # a view may


def test_a_figure_importing_methods_is_caught():
    assert figure_violations({"pruneviz.plots": "from .methods.base import RECOVERY"}) == [
        "pruneviz.plots imports pruneviz.methods.base",
        "pruneviz.plots imports pruneviz.methods.base.RECOVERY"]


CHECK = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
if "pruneviz.session" in sys.argv[1:]:
    from pruneviz.methods import load_all
    load_all()
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(*names: str) -> set[str]:
    """The modules a fresh interpreter holds after importing `names` (and, with the session,
    every method: the engine loads them all)."""
    out = subprocess.run([sys.executable, "-c", CHECK, *names], capture_output=True,
                         text=True, check=True, cwd=ROOT.parent)
    return set(json.loads(out.stdout))


ENGINE = ["pruneviz.session", "pruneviz.workers", "pruneviz.backends", "pruneviz.raybackend",
          "pruneviz.report", "pruneviz.export", "pruneviz.cli.main",
          *(f"pruneviz.methods.{f}.{p}" for f in ("pgmpf", "pgp", "slr", "fggp")
            for p in ("engine", "math", "records"))]


def test_the_engine_loads_nothing_of_the_dashboards_side():
    assert sorted(m for m in loaded_by(*ENGINE) if banned(m)) == []


def test_the_figures_load_no_method():
    assert not any(m.startswith("pruneviz.methods") for m in loaded_by(*FIGURES))


def test_a_loaded_violation_is_caught():
    assert "plotly" in {m for m in loaded_by("pruneviz.config", "plotly") if banned(m)}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def foreign_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles other than a package with its own modules (methods/__init__ loads base, base's
    get_method calls the package's load_all)."""
    def own(component: list[str]) -> bool:
        head = min(component, key=len)
        return all(m == head or m.startswith(head + ".") for m in component)

    return [c for c in cycles(graph) if not own(c)]


def import_graph() -> dict[str, set[str]]:
    return {m: {x for x in module_imports(m) if x in MODULES and x != m} for m in MODULES}


def test_no_two_modules_import_each_other():
    graph = import_graph()
    assert foreign_cycles(graph) == []
    assert not any(x.startswith("pruneviz.methods") for x in graph["pruneviz.config"])
    assert "pruneviz.backends" not in graph["pruneviz.raytask"]


@pytest.mark.parametrize("module,line", [
    ("pruneviz.config", "def f():\n    from .methods.base import check_pattern"),
    ("pruneviz.raytask", "def f():\n    from .backends import load_backend"),
])
def test_an_import_circle_is_caught(module, line):
    graph = import_graph()
    graph[module] |= {x for x in imports(line, module) if x in MODULES}
    assert foreign_cycles(graph) != []
