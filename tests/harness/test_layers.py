"""Imports flow one way (issue 12 item 6, issue 21 D), checked over the source's AST.

Over ``harness/``, ``serving/`` and ``backend_patch/``, every module stands on a floor
(:data:`FLOORS`, lowest first) and may import its own floor and the floors below it, never one
above; and no modules import each other in a circle, imports under ``if TYPE_CHECKING:`` and
inside functions included (:func:`test_no_import_cycles`).

The floors: the backend, then ``serving/`` (TorchServe's side, which uses the backend's
model code and key-file parser), then the harness's shared leaves (``harness.redact``,
``harness.clock``, ``harness.exitcodes``, ``harness.hdr`` and the typed vocabulary
``harness.results.model`` / ``harness.results.description``: pydantic, numpy and the standard
library only), then the run's layers, lowest first: scenario -> stack -> load -> collectors ->
analysis -> results -> report; then the orchestration of one run (runner, timeline, watch,
rollout, live, loop, progress, interrupts, outcome), the library API (``harness.api``), the
packages on top of a run (a sweep runs many; a decision runs runs and sweeps and judges them),
and the faces: the CLI and ``harness/__init__.py``, which no module inside ``harness/`` imports
(import the defining module instead: the face loads its names lazily).

Outside code, within the harness's layers: only scenario/ may import the backend (its settings,
sign classes and synthetic generator), only stack/ the serving package, with one exception:
scenario/ may import ``serving.settings``, the one TorchServe settings type (pydantic and the
standard library only, no torch, no TorchServe), because a scenario's ``stack.torchserve``
block IS those settings; a copy of its fields and ranges in the scenario is what that module
replaced.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "harness"
PACKAGES = ("harness", "serving", "backend_patch")
LAYERS = ("scenario", "stack", "load", "collectors", "analysis", "results", "report")
# Packages on top of a run, lowest first: a sweep runs many; a decision runs runs and sweeps
# and judges them. No layer imports them, and the sweep does not import the decision.
TOP = ("sweep", "decision")
LEAVES = (
    "harness.redact",
    "harness.clock",
    "harness.exitcodes",
    "harness.hdr",
    "harness.results.model",
    "harness.results.description",
)
# The orchestration of one run, in its room (issue 21 C): harness/runner/.
RUN = (
    "harness.runner",  # its __init__: a docstring, no imports
    "harness.runner.interrupts",
    "harness.runner.live",
    "harness.runner.loop",
    "harness.runner.outcome",
    "harness.runner.progress",
    "harness.runner.controller",
    "harness.runner.execute",
    "harness.runner.timeline",
    "harness.runner.watch",
)
FACE = "harness"  # harness/__init__.py: the public API, imported from outside only
# Every module of the three packages, lowest floor first; the longest matching name wins
# (``harness`` itself matches only the face). A new module must be placed here.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("backend_patch",),
    ("serving",),
    LEAVES,
    *((f"harness.{layer}",) for layer in LAYERS),
    RUN,
    ("harness.api",),
    *((f"harness.{top}",) for top in TOP),
    ("harness.cli", "harness.__main__", FACE),
)
# Outside packages (or modules of them) and the layers that may import them; the longest
# matching name wins.
OUTSIDE = {
    "backend_patch": ("scenario",),
    "serving": ("stack",),
    "serving.settings": ("scenario", "stack"),
}
# Known breaks, each to be removed by moving code, never extended. (Empty: the scenario
# validator's traffic planner and connect lead moved down to harness/scenario/traffic.py.)
KNOWN: set[tuple[str, str]] = set()


def _imports(rel: Path, source: str) -> list[tuple[int, str]]:
    """(line, module) of every import in ``source`` (module ``rel``), relative ones resolved."""
    tree = ast.parse(source)
    package = ".".join(rel.with_suffix("").parts[:-1])
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            out.append((node.lineno, module))
    return out


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "harness" or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def _outside(module: str) -> str | None:
    """The OUTSIDE entry ruling ``module`` (the longest one it is or is inside), None if none."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in OUTSIDE:
            return ".".join(parts[:n])
    return None


def _top(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "harness" or len(parts) < 2 or parts[1] not in TOP:
        return None
    return TOP.index(parts[1])


def _module_name(rel: Path) -> str:
    """``harness/stack/base.py`` -> ``harness.stack.base``; a package's ``__init__`` is the
    package."""
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _floor(module: str) -> int | None:
    """The floor of ``module`` (an index into FLOORS), None for a module on none."""
    best: tuple[int, int] | None = None  # (length of the matching entry, floor)
    for n, floor in enumerate(FLOORS):
        for entry in floor:
            inside = module.startswith(entry + ".") and entry != FACE
            if (module == entry or inside) and (best is None or len(entry) > best[0]):
                best = (len(entry), n)
    return None if best is None else best[1]


def _floor_violations_in(rel: Path, source: str) -> list[str]:
    """Imports of module ``rel`` that run up a floor, or through the face; ``rel`` on none."""
    name = _module_name(rel)
    own = _floor(name)
    if own is None:
        return [f"{rel}: on no floor (place it in FLOORS)"]
    found: list[str] = []
    for line, imported in _imports(rel, source):
        if imported == FACE and name != FACE:
            found.append(f"{rel}:{line}: imports through the face (import the defining module)")
            continue
        floor = _floor(imported)
        if floor is not None and floor > own:
            found.append(f"{rel}:{line}: imports {imported} (a floor above)")
    return found


def _violations_in(rel: Path, source: str) -> list[str]:
    """The forbidden imports of module ``rel`` (``harness/<layer>/...py``) with ``source``."""
    found: list[str] = []
    name = ".".join(rel.with_suffix("").parts)
    own = _layer(name)
    own_top = _top(name)
    if own is not None or own_top is not None:
        for line, imported in _imports(rel, source):
            top = _top(imported)
            if top is not None and (own_top is None or top > own_top):
                found.append(f"{rel}:{line}: imports {imported} (harness.{TOP[top]} is above)")
    if own is None:
        return found  # orchestration on top: may import anything
    for line, imported in _imports(rel, source):
        if imported.startswith(LEAVES):
            continue
        outside = _outside(imported)
        if outside is not None and rel.parts[1] not in OUTSIDE[outside]:
            found.append(f"{rel}:{line}: imports {imported} (only {OUTSIDE[outside]} may)")
        layer = _layer(imported)
        if (str(rel), imported) in KNOWN:
            continue
        if layer is not None and layer > own:
            found.append(
                f"{rel}:{line}: {LAYERS[own]} imports {imported} ({LAYERS[layer]} is above)"
            )
    return found


def _sources() -> dict[Path, str]:
    """Every module of the three packages: its path (from the repository root) and source."""
    return {
        path.relative_to(ROOT): path.read_text(encoding="utf-8")
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _violations() -> list[str]:
    found: list[str] = []
    for rel, source in _sources().items():
        if rel.parts[0] == "harness":
            found += _violations_in(rel, source)
        found += _floor_violations_in(rel, source)
    return found


def _graph(sources: Mapping[Path, str]) -> dict[str, set[str]]:
    """Module -> the modules of ``sources`` it imports (anywhere in the file: at the top, in a
    function, under ``if TYPE_CHECKING:``). ``from p import m`` names module ``p.m`` where there
    is one; an import of a module's name inside it (``p.m.f``) names the module."""
    names = {_module_name(rel): rel for rel in sources}
    graph: dict[str, set[str]] = {}
    for name, rel in names.items():
        tree = ast.parse(sources[rel])
        package = name if rel.name == "__init__.py" else name.rpartition(".")[0]
        wanted: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                wanted |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    wanted.add(sub if sub in names else module)
        graph[name] = set()
        for module in wanted:
            parts = module.split(".")
            known = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
            target = next((m for m in known if m in names), None)
            if target is not None and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than one
    module (Tarjan's algorithm, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def _room(module: str) -> str:
    """The room of ``module``: ``harness.<folder or top-level module>``, or its package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "harness" else parts[0]


def _rooms(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """``graph`` with each module folded into its room (imports inside a room dropped)."""
    rooms: dict[str, set[str]] = {}
    for module, imported in graph.items():
        rooms.setdefault(_room(module), set()).update(
            _room(m) for m in imported if _room(m) != _room(module)
        )
    return rooms


def test_imports_flow_one_way() -> None:
    assert _violations() == []


def test_no_import_cycles() -> None:
    assert _cycles(_graph(_sources())) == []


def test_no_import_cycles_between_rooms() -> None:
    # A room (a folder such as results/) that another imports must not import it back, even
    # through other modules: that is an arrow running back up (provenance -> stack.base).
    assert _cycles(_rooms(_graph(_sources()))) == []


def test_the_room_check_sees_a_loop_through_two_modules() -> None:
    sources = {
        Path("harness/stack/base.py"): "from harness.results.description import X\n",
        Path("harness/results/description.py"): "import os\n",
        Path("harness/results/provenance.py"): "from harness.stack.base import Stack\n",
    }
    graph = _graph(sources)
    assert _cycles(graph) == []  # no module loop ...
    assert _cycles(_rooms(graph)) == [["harness.results", "harness.stack"]]  # ... but a room one


def test_every_module_stands_on_a_floor() -> None:
    # A check that saw nothing would pass: each package and layer is found and placed.
    sources = _sources()
    floors = {_floor(_module_name(rel)) for rel in sources}
    assert None not in floors
    assert floors == set(range(len(FLOORS)))
    assert {rel.parts[0] for rel in sources} == set(PACKAGES)


@pytest.mark.parametrize(
    ("sources", "cycles"),
    [
        # Type-only: still a cycle (the review's api -> progress -> runner -> progress).
        (
            {
                "harness/a.py": "from harness.b import B\n",
                "harness/b.py": "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from harness.a import A\n",
            },
            [["harness.a", "harness.b"]],
        ),
        # Inside a function, through a package's face and a relative import.
        (
            {
                "harness/p/__init__.py": "from .x import X\n",
                "harness/p/x.py": "def f():\n    from harness.q import y\n",
                "harness/q/__init__.py": "",
                "harness/q/y.py": "from harness.p import X\n",
            },
            [["harness.p", "harness.p.x", "harness.q.y"]],
        ),
        ({"harness/a.py": "import harness.b\n", "harness/b.py": "import os\n"}, []),
    ],
)
def test_the_cycle_check_sees_every_kind_of_import(
    sources: dict[str, str], cycles: list[list[str]]
) -> None:
    graph = _graph({Path(rel): text for rel, text in sources.items()})
    assert _cycles(graph) == cycles


@pytest.mark.parametrize(
    ("module", "source", "bad"),
    [
        ("serving/local.py", "from harness.stack.procs import free_port\n", True),
        ("serving/local.py", "from serving.procs import free_port\n", False),
        ("backend_patch/app/ml/keys.py", "from serving.management import MODEL_NAME\n", True),
        ("harness/stack/base.py", "from harness.results.description import X\n", False),
        ("harness/runner/progress.py", "from harness.api import RunOutcome\n", True),
        ("harness/runner/progress.py", "from harness.runner.outcome import RunOutcome\n", False),
        ("harness/analysis/summary.py", "from harness import hdr\n", True),
        ("harness/analysis/summary.py", "import harness.hdr as hdr\n", False),
        ("harness/cli.py", "import harness\n", True),
        ("harness/__init__.py", "from harness.api import run\n", False),
        ("harness/newroom.py", "import os\n", True),
    ],
)
def test_the_floors_catch_an_upward_import(module: str, source: str, bad: bool) -> None:
    found = _floor_violations_in(Path(module), source)
    assert bool(found) is bad, found


def test_importing_a_submodule_does_not_load_the_api() -> None:
    # The face loads its names on first use: a submodule's importer (the TorchServe image, the
    # load workers, the analysis alone) pays for that submodule only.
    probe = "import sys, harness.hdr; print(sorted(m for m in sys.modules if m in {0}))"
    heavy = {"harness.api", "harness.runner.execute", "harness.stack", "harness.decision"}
    out = subprocess.run(
        [sys.executable, "-c", probe.format(sorted(heavy))],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("from harness.analysis.gates import parse_gate\n", True),
        ("from harness.results.writer import read_results\n", True),
        ("from harness.results.model import METRICS\n", False),
        ("from backend_patch.app.ml import synthetic\n", False),
        ("from serving.local import free_port\n", True),
        ("from serving.settings import TorchServeSettings\n", False),
        ("import serving.settings\n", False),
        ("from serving.management import ManagementClient\n", True),
        ("from serving import settings\n", True),
    ],
)
def test_the_rule_catches_an_upward_import(source: str, bad: bool) -> None:
    # A module of the scenario layer: the check must see what it imports.
    found = _violations_in(Path("harness/scenario/probe.py"), source)
    assert bool(found) is bad, found


@pytest.mark.parametrize(
    ("module", "source", "bad"),
    [
        ("harness/analysis/probe.py", "from harness.decision import decide\n", True),
        ("harness/report/probe.py", "import harness.sweep.analysis\n", True),
        ("harness/sweep/probe.py", "from harness.decision.model import Decision\n", True),
        ("harness/decision/probe.py", "from harness.sweep.loader import load_sweep\n", False),
        ("harness/decision/probe.py", "from harness.analysis.compare import compare\n", False),
        ("harness/cli.py", "from harness.decision import decide\n", False),
    ],
)
def test_the_top_packages_are_imported_from_above_only(module: str, source: str, bad: bool) -> None:
    found = _violations_in(Path(module), source)
    assert bool(found) is bad, found
