"""The package's layering (README, "Architecture"): which room may import which, checked on the source.

Every import of every module under ``planner/`` and ``formulations/`` is read with ``ast``, at any
depth (function-level imports count: they are dependencies too); only ``if TYPE_CHECKING:`` blocks
are skipped. A module is in a *room*: a subpackage of ``planner`` (``scenario``, ``perf``, ...),
``formulations``, one of the shared foundation modules (``planner/errors.py``, ``io.py``,
``limits.py``, ``highs_runtime.py``), or the facade ``planner/__init__.py``.

The tests fail when the layering breaks: a room importing one it may not (the map below is the
architecture), a cycle between rooms or between modules, ``formulations`` reaching past the
scenario types or into a solver, the checker reaching a solver or the model, or anything outside
``planner/cli`` importing the command line. A last test imports every module first in a clean
interpreter state, which catches circles that only bite in some import orders.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("planner", "formulations")
SOLVERS = ("highspy", "pyomo", "pulp")

# room -> the rooms it may import (besides itself). The foundation modules import only each other.
ALLOWED = {
    "errors": set(),
    "limits": {"errors"},
    "io": {"errors", "limits"},
    "highs_runtime": {"io"},
    "scenario": {"errors", "io", "limits", "highs_runtime"},
    "perf": {"errors", "io", "scenario"},
    "datatools": {"errors", "io"},
    "formulations": {"scenario"},
    "plan": {"errors", "io", "scenario"},
    "optimize": {"errors", "io", "limits", "highs_runtime", "scenario", "formulations", "plan"},
    "sim": {"errors", "io", "limits", "perf", "datatools", "plan", "scenario"},
    "verify": {"errors", "io", "limits", "scenario", "plan", "optimize", "sim"},
    "cli": {"errors", "io", "limits", "scenario", "perf", "datatools", "plan", "optimize", "sim", "verify"},
    "facade": {"errors", "scenario", "plan"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """Absolute names of everything ``name`` imports (``from pkg import mod`` gives ``pkg.mod``)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for sub in node.body for n in ast.walk(sub)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                mod = base + ("." + node.module if node.module else "")
            else:
                mod = node.module
            for a in node.names:
                out.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod)
    return out


GRAPH = {m: _imports(m) for m in MODULES}


def _ours(m: str) -> bool:
    return m.split(".")[0] in PACKAGES


def room(m: str) -> str:
    parts = m.split(".")
    if parts[0] == "formulations":
        return "formulations"
    if len(parts) == 1:
        return "facade"
    return parts[1]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for t in sorted(graph.get(n, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_every_module_is_in_a_known_room():
    assert {room(m) for m in MODULES} <= set(ALLOWED), sorted({room(m) for m in MODULES} - set(ALLOWED))
    # the foundation is exactly these modules: a new top-level module needs a room of its own here
    top = sorted(m for m in MODULES if m.startswith("planner.") and m.count(".") == 1
                 and MODULES[m].name != "__init__.py")
    assert top == ["planner.errors", "planner.highs_runtime", "planner.io", "planner.limits"], top


def test_rooms_import_only_what_the_architecture_allows():
    bad = sorted((m, t) for m, ts in GRAPH.items() for t in ts
                 if _ours(t) and room(t) != room(m) and room(t) not in ALLOWED[room(m)])
    assert not bad, "imports against the layering (module, imported): " + repr(bad)


def test_no_cycle_between_rooms():
    rooms: dict[str, set[str]] = {}
    for m, ts in GRAPH.items():
        rooms.setdefault(room(m), set()).update(room(t) for t in ts if _ours(t) and room(t) != room(m))
    assert _cycle(rooms) is None, _cycle(rooms)


def test_no_cycle_between_modules():
    """Also inside a room (the old ``solving`` <-> ``decompose`` circle); a package's ``__init__``
    re-exporting its own modules is not a cycle, so its edges into the package are left out."""
    graph = {m: {t for t in ts if _ours(t) and t in MODULES and not (MODULES[m].name == "__init__.py"
                                                                   and t.startswith(m + "."))}
             for m, ts in GRAPH.items()}
    assert _cycle(graph) is None, _cycle(graph)


def test_formulations_reads_only_the_scenario_types_and_no_solver():
    for m in (m for m in MODULES if room(m) == "formulations"):
        planner_imports = {t for t in GRAPH[m] if t.split(".")[0] == "planner"}
        assert planner_imports <= {"planner.scenario.schema"}, (m, planner_imports)
        assert not [t for t in GRAPH[m] if t.split(".")[0] in SOLVERS], m


def test_checker_imports_neither_a_solver_nor_the_model():
    """The independent checker must not share code with the solve path: a bug in the model or its
    extraction would otherwise hide itself (the guard formerly in test_checker.py)."""
    mods = GRAPH["planner.plan.checker"]
    banned = SOLVERS + ("formulations", "planner.optimize", "planner.highs_runtime")
    assert not [t for t in mods if t.startswith(banned)], mods


def test_nothing_outside_the_cli_imports_it():
    bad = sorted((m, t) for m, ts in GRAPH.items() if room(m) != "cli" for t in ts if t.startswith("planner.cli"))
    assert not bad, bad


def test_library_modules_import_the_defining_module_not_a_package():
    """Inside the library, ``from planner.scenario import X`` would make every module of that package a
    dependency; modules name the module they need (package ``__init__`` files may re-export). A package
whose ``__init__`` defines functions of its own (``optimize.backends``: ``get_backend``) is a module."""
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py" and "." in m
                and not any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in ast.parse(p.read_text()).body)}
    bad = sorted((m, t) for m, ts in GRAPH.items() if MODULES[m].name != "__init__.py" for t in ts if t in packages)
    assert not bad, bad


CLEAN_IMPORTS = r"""
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for m in [m for m in sys.modules if m.split(".")[0] in ("planner", "formulations")]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
    except Exception as e:
        failed.append(f"{name}: {type(e).__name__}: {e}")
print("\n".join(failed))
"""


def test_every_module_imports_first_in_a_clean_state():
    """``import formulations`` as a program's first import used to fail (formulations -> planner ->
    solving -> formulations, half initialised); every module must import first, in any order."""
    names = [m for m in MODULES if not m.endswith("__main__")]
    r = subprocess.run([sys.executable, "-c", CLEAN_IMPORTS, *names], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "", r.stdout


def test_the_checker_alone_loads_no_solver_and_no_model():
    code = ("import sys, planner.plan.checker; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('highspy', 'pyomo', 'pulp', 'formulations') or m.startswith(('planner.optimize', 'planner.highs_runtime'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "[]", r.stdout


def test_the_wheel_packages_every_library_package_and_no_build_script():
    """pyproject's explicit package list names every package under planner/ and formulations/; the
    data package ships tables only (the build scripts live in tools/, outside the wheel)."""
    import tomllib

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert packages | {"planner_data"} == set(conf["packages"]), sorted(packages ^ set(conf["packages"]))
    assert conf["package-dir"] == {"planner_data": "data"}
    assert sorted(p.name for p in (ROOT / "data").rglob("*.py")) == ["__init__.py"]
    assert not any(pattern.endswith(".py") for pattern in conf["package-data"]["planner_data"])
