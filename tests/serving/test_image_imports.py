"""The TorchServe image's copy of the project's Python imports with what that image has.

docker/torchserve/Dockerfile copies a few files of serving/ (and the one key-file parser of
backend_patch/) to /usr/local/lib/signflow and installs pydantic only; registration and the
health check import ``serving.management`` from there. This rebuilds that folder from the
Dockerfile's COPY lines and imports it in a fresh interpreter where any third-party package
other than pydantic is refused, so a new import (numpy, aiohttp, harness) fails here instead
of in the container.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "torchserve" / "Dockerfile"
LIB = "/usr/local/lib/signflow/"

GUARD = """
import sys, importlib.abc, importlib.machinery
ALLOWED = {"pydantic", "pydantic_core", "typing_extensions", "annotated_types",
           "typing_inspection"}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in ALLOWED or "." in name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        origin = str(getattr(spec, "origin", None) or spec and spec.submodule_search_locations)
        if spec is not None and "site-packages" in origin:
            raise ImportError(f"{name} is not in the TorchServe image")
        return None
sys.meta_path.insert(0, Refuse())
sys.path.insert(0, sys.argv[1])
import serving.management, serving.settings
doc = {"management": {"key": "m", "expiration time": "2026-11-30T06:56:56.048682742Z"}}
print(serving.management.key_expiry(doc).isoformat())
"""


def _image_lib(dest_root: Path) -> None:
    for line in DOCKERFILE.read_text().splitlines():
        parts = shlex.split(line) if line.startswith("COPY ") else []
        if len(parts) < 3 or not parts[-1].startswith(LIB) or parts[1].startswith("--"):
            continue
        dest = dest_root / parts[-1][len(LIB) :]
        dest.mkdir(parents=True, exist_ok=True)
        for src in parts[1:-1]:
            (dest / Path(src).name).write_bytes((ROOT / src).read_bytes())


def test_management_imports_in_the_torchserve_image(tmp_path: Path) -> None:
    _image_lib(tmp_path)
    assert (tmp_path / "serving" / "management.py").is_file()
    out = subprocess.run(
        [sys.executable, "-c", GUARD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2026-11-30T06:56:56.048683+00:00"


# ---- the backend and load-generator images: every third-party import installed ------------
#
# docker/backend/Dockerfile and docker/loadgen/Dockerfile install a named list of packages, not
# the project's whole dependency set; a new third-party import in the code they copy (msgspec
# was one) broke the containers only, at start. Here each image's entry modules are imported in
# a fresh interpreter that refuses any installed package outside that list and what the listed
# packages themselves require.

IMAGE_GUARD = """
import importlib, importlib.abc, importlib.machinery, json, sys
allowed = set(json.loads(sys.argv[1]))
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if "." in name or name in allowed:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        origin = str(getattr(spec, "origin", None) or spec and spec.submodule_search_locations)
        if spec is not None and "site-packages" in origin:
            raise ImportError(f"{name} is imported but not installed in the image")
        return None
sys.meta_path.insert(0, Refuse())
sys.path.insert(0, sys.argv[2])
for module in sys.argv[3:]:
    importlib.import_module(module)
print("ok")
"""


def _pip_names(dockerfile: Path) -> set[str]:
    """Distribution names the Dockerfile's ``pip install`` lines name (extras kept)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    names: set[str] = set()
    for line in text.splitlines():
        for part in line.split("pip install")[1:]:
            for word in shlex.split(part.split(";")[0].split("&&")[0]):
                if not word.startswith("-") and word != "requirements.lock":
                    names.add(word)
    return names


def _allowed_modules(requested: set[str]) -> list[str]:
    """Top-level modules of the requested distributions and everything they require (markers
    with an extra count only for the extras asked, e.g. ``uvicorn[standard]``)."""
    import re
    from importlib import metadata

    todo = [(re.split(r"[\[=<>]", r)[0], set(re.findall(r"\[(.*)\]", r)[:1])) for r in requested]
    seen: set[str] = set()
    while todo:
        name, extras = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            spec, _, marker = req.partition(";")
            if "extra ==" in marker and not any(f'"{e}"' in marker for e in extras):
                continue
            todo.append((re.split(r"[\s\[=<>!~(]", spec.strip())[0], set()))
    modules = {
        top
        for top, dists in metadata.packages_distributions().items()
        if any(d.lower().replace("_", "-") in seen for d in dists)
    }
    return sorted(modules)


@pytest.mark.parametrize(
    ("image", "extra", "modules"),
    [
        ("backend", {"torch"}, ["backend_patch.__main__", "backend_patch.app.main"]),
        ("loadgen", set(), ["harness.cli", "harness.load.distributed.locustfile"]),
    ],
)
def test_image_installs_what_its_code_imports(
    image: str, extra: set[str], modules: list[str]
) -> None:
    import json

    dockerfile = ROOT / "docker" / image / "Dockerfile"
    allowed = _allowed_modules(_pip_names(dockerfile) | extra)
    out = subprocess.run(
        [sys.executable, "-c", IMAGE_GUARD, json.dumps(allowed), str(ROOT), *modules],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, f"{dockerfile.relative_to(ROOT)}:\n{out.stderr[-2000:]}"
