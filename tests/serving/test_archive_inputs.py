"""The Makefile rebuilds the model archives when anything they are made from changes.

``make`` is not run here: the test reads the Makefile's ``ARCHIVE_INPUTS`` and follows the
imports of the archive's builder and handler (``ast``, nothing imported), so a serving module
that shapes an archive but is missing from the list (serving/settings.py once was: its
defaults become the archive's model-config.yaml) leaves a stale archive after an edit.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What the archive is built by and what it carries (handler.py pulls in request_parser).
ROOTS = ("serving/package_model.py", "serving/handler.py", "serving/request_parser.py")


def _make_variable(name: str) -> set[str]:
    """The words of a simple ``NAME := ...`` assignment of the Makefile (continuations joined)."""
    text = (REPO / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    match = re.search(rf"^{name}\s*:=(.*)$", text, re.MULTILINE)
    assert match, f"Makefile has no {name} := ..."
    return set(match.group(1).split())


def _serving_imports(path: str) -> set[str]:
    """Repository paths of the serving/ modules ``path`` imports (any depth of the file)."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "serving":
                names.update(f"serving.{a.name}" for a in node.names)
            else:
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    found = {n.replace(".", "/") + ".py" for n in names if n.startswith("serving.")}
    return {p for p in found if (REPO / p).is_file()}


def test_archive_inputs_list_every_serving_module_an_archive_is_made_from() -> None:
    reached: set[str] = set()
    todo = list(ROOTS)
    while todo:
        path = todo.pop()
        if path not in reached:
            reached.add(path)
            todo.extend(_serving_imports(path))
    assert "serving/settings.py" in reached  # package_model's model-config.yaml defaults
    missing = reached - _make_variable("ARCHIVE_INPUTS")
    assert not missing, f"Makefile ARCHIVE_INPUTS lacks {sorted(missing)}"
