"""Imports inside harness/ flow one way (issue 12 item 6), checked over the source's AST.

Layers, lowest first: scenario -> stack -> load -> collectors -> analysis -> results -> report.
A module may import its own layer and the layers below it, never one above. Shared leaves any
layer may import: ``harness.redact``, ``harness.clock``, ``harness.exitcodes`` and the typed
vocabulary ``harness.results.model`` (a leaf: pydantic and the standard library only). The
orchestration modules (api, runner, cli, progress, timeline, loop, interrupts) sit on top.
Outside code: only scenario/ may import the backend (its settings, sign classes and synthetic
generator), only stack/ the serving package, with one exception: scenario/ may import
``serving.settings``, the one TorchServe settings type (pydantic and the standard library only,
no torch, no TorchServe), because a scenario's ``stack.torchserve`` block IS those settings;
a copy of its fields and ranges in the scenario is what that module replaced.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "harness"
LAYERS = ("scenario", "stack", "load", "collectors", "analysis", "results", "report")
# Packages on top of a run, lowest first: a sweep runs many; a decision runs runs and sweeps
# and judges them. No layer imports them, and the sweep does not import the decision.
TOP = ("sweep", "decision")
LEAVES = ("harness.redact", "harness.clock", "harness.exitcodes", "harness.results.model")
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


def _violations() -> list[str]:
    return [
        v
        for path in sorted(HARNESS.rglob("*.py"))
        for v in _violations_in(path.relative_to(HARNESS.parent), path.read_text(encoding="utf-8"))
    ]


def test_imports_flow_one_way() -> None:
    assert _violations() == []


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
