"""A stand-in for the CUDA machine's Python, for testing scripts/gpu-run.sh's install path here.

The CUDA machine's python3 is a venv's that holds torch and the packages that
scripts/gpu_deps.py's PREINSTALLED names, and nothing else of this project's. This builds the
same shape from this machine's venv: a fresh venv (no system site-packages) whose one extra
site directory holds links to exactly those distributions' files, so what the kit must supply
is missing here as it is there.

  python tests/harness/sweep/fake_device.py DIR   # DIR/bin/python is the stand-in
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
from gpu_deps import PREINSTALLED


def build(root: Path) -> Path:
    """Create the stand-in venv at ``root``; return its python. Raises CalledProcessError when
    ``python -m venv`` fails."""
    # No pip or setuptools of the venv's own: the machine's (linked below) are the ones there.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    machine = root / "machine-site"
    machine.mkdir()
    here = Path(sysconfig.get_paths()["purelib"])
    for name in sorted(PREINSTALLED | {"pip"}):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # on the CUDA machine, not needed by this machine's install
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in tops:
            src = here / top
            if top != ".." and src.exists() and not (machine / top).exists():
                os.symlink(src, machine / top)
    (Path(purelib) / "machine-site.pth").write_text(f"{machine}\n")
    return python


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
