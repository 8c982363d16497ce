"""What scripts/gpu-run.sh needs on the CUDA machine, in one place for the kit and the run.

The CUDA machine (see docs/HARNESS.md, "GPU run") has Python 3.12 with torch and a large
scientific stack preinstalled, but no network. The kit (scripts/gpu-kit.sh) carries wheels only
for what is missing there; the run checks, before it starts anything, that every requirement is
met by the machine's own packages plus the kit's.

  python scripts/gpu_deps.py kit --python-version 3.12   # name==version per line: the kit's wheels
  python scripts/gpu_deps.py check                         # exit 1 naming each unmet requirement

The dependency graph is the project's runtime dependencies (pyproject.toml) walked through the
installed distributions' metadata: ``kit`` runs where the project is installed (the repository's
venv, whose versions are requirements.lock's pins); ``check`` runs on the machine itself.
Standard library plus ``packaging`` (present on both machines).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]

# Runtime dependencies that a GPU run never imports, with why; the walk does not enter them, so
# their own dependencies (gevent, Flask, pyzmq, ...) stay out of the kit too.
NOT_USED = {
    "locust": "distributed load only (harness.load.distributed); the GPU run uses one load machine",
    "docker": "the compose driver only; the GPU run uses driver: local",
    "watchfiles": "uvicorn[standard]'s --reload only",
}

# What the CUDA machine's image ships, among the packages this project's closure reaches (the
# image's package list, read 2026-11-17). The kit leaves them out: torch because the machine's
# CUDA build is the point of the run, the rest because carrying them would not fit in 64 MiB
# (scipy alone is 35 MiB). `check` still verifies each against the requirements that reach it.
PREINSTALLED = frozenset(
    canonicalize_name(n)
    for n in [
        "aiohappyeyeballs",
        "aiohttp",
        "aiosignal",
        "annotated-doc",
        "anyio",
        "attrs",
        "certifi",
        "charset-normalizer",
        "click",
        "contourpy",
        "cycler",
        "filelock",
        "fonttools",
        "frozenlist",
        "fsspec",
        "h11",
        "httpcore",
        "httpx",
        "idna",
        "jinja2",
        "kiwisolver",
        "markdown-it-py",
        "markupsafe",
        "matplotlib",
        "mdurl",
        "mpmath",
        "msgpack",
        "multidict",
        "networkx",
        "numpy",
        "nvidia-ml-py",
        "packaging",
        "pillow",
        "prometheus-client",
        "propcache",
        "psutil",
        "pygments",
        "pyparsing",
        "python-dateutil",
        "pyyaml",
        "requests",
        "rich",
        "scipy",
        "setuptools",
        "six",
        "sympy",
        "torch",
        "typing-extensions",
        "urllib3",
        "uvloop",
        "werkzeug",
        "wheel",
        "yarl",
    ]
)

# Checked for presence only: the pin in pyproject.toml is this machine's CPU build; on the CUDA
# machine the preinstalled CUDA build (another version) is the one to measure.
PRESENCE_ONLY = frozenset({"torch"})


def _roots() -> list[Requirement]:
    with (REPO / "pyproject.toml").open("rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    return [Requirement(d) for d in deps]


def _applies(req: Requirement, extras: Iterable[str], env: dict[str, str]) -> bool:
    """Whether ``req`` (one Requires-Dist line) is wanted, given the extras its parent was asked
    with and the target's marker environment."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": e}) for e in (*extras, ""))


def walk(env: dict[str, str]) -> tuple[dict[str, list[Requirement]], list[str]]:
    """Every distribution the project needs at run time (``NOT_USED`` pruned), each with the
    requirements that reach it; plus the names not installed in this interpreter.

    The walk does not enter a PREINSTALLED distribution: the image brings what it needs (and
    this machine's newer version of it may need more, e.g. python-dateutil 4's tzdata)."""
    reached: dict[str, list[Requirement]] = {}
    missing: list[str] = []
    todo = _roots()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in NOT_USED:
            continue
        first = name not in reached
        reached.setdefault(name, []).append(req)
        if not first or name in PREINSTALLED:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        for line in dist.requires or []:
            sub = Requirement(line)
            if _applies(sub, req.extras, env):
                todo.append(sub)
    return reached, missing


def kit(python_version: str) -> int:
    """Print ``name==version`` for each needed distribution that the CUDA machine lacks."""
    major_minor = ".".join(python_version.split(".")[:2])
    env: dict[str, str] = {
        **default_environment(),
        "python_version": major_minor,
        "python_full_version": f"{major_minor}.0",
    }
    reached, missing = walk(env)
    if missing:
        print(f"not installed here (install the project first): {missing}", file=sys.stderr)
        return 1
    for name in sorted(reached):
        if name not in PREINSTALLED:
            print(f"{name}=={metadata.version(name)}")
    return 0


def check() -> int:
    """Exit 1, naming each one, when a needed distribution is absent or the wrong version."""
    reached, missing = walk(dict(default_environment()))
    problems = [f"{name}: not installed" for name in missing]
    for name, reqs in sorted(reached.items()):
        if name in missing or name in PRESENCE_ONLY:
            continue
        version = metadata.version(name)
        for req in reqs:
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                problems.append(f"{name} {version} does not satisfy {req}")
    for p in problems:
        print(f"gpu_deps: {p}", file=sys.stderr)
    if not problems:
        print(f"gpu_deps: {len(reached)} distributions present and matching")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kit", help="the kit's wheels, name==version per line")
    k.add_argument("--python-version", default="3.12")
    sub.add_parser("check", help="verify this interpreter has everything the run needs")
    args = parser.parse_args(argv)
    return kit(args.python_version) if args.cmd == "kit" else check()


if __name__ == "__main__":
    sys.exit(main())
