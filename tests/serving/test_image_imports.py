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
