#!/usr/bin/env bash
# Download what scripts/gpu-run.sh needs on a GPU machine that has Python 3.12 and torch but no
# Java and no network: wheels (TorchServe, the model archiver, the project's pure-Python and
# manylinux dependencies except torch) and Debian's Java 17 runtime packages, into an ignored
# folder carried beside the repository (default gpu-kit/, under 64 MiB in all).
#   scripts/gpu-kit.sh [KIT_DIR]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
KIT=${1:-$REPO/gpu-kit}
PY=${PYTHON:-$REPO/.venv/bin/python}
LIMIT_MB=64
mkdir -p "$KIT/wheels" "$KIT/debs"

# Wheels for CPython 3.12 on x86-64 Linux; torch and its CUDA libraries are preinstalled there.
# Left out: torch and what a torch install already brings, and the development tools.
SKIP='^(torch|nvidia-|triton|numpy|jinja2|markupsafe|sympy|mpmath|networkx|fsspec|filelock'
SKIP+='|typing.extensions|setuptools|pip|ruff|mypy|pytest|hypothesis|tox|coverage|pyright'
SKIP+='|types-|pluggy|iniconfig|py-cpuinfo|pytest-)'
grep -E '^[A-Za-z0-9_.-]+==' "$REPO/requirements.lock" | grep -viE "$SKIP" > "$KIT/requirements.txt"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform any -d "$KIT/wheels" -r "$KIT/requirements.txt"

# Java 17 runtime: the packages themselves (apt-get download: no root, no install here).
( cd "$KIT/debs" && apt-get download openjdk-17-jre-headless >/dev/null )

size=$(du -sm "$KIT" | cut -f1)
echo "gpu kit: $KIT, ${size} MiB ($(ls "$KIT/wheels" | wc -l) wheels, $(ls "$KIT/debs" | wc -l) debs)"
if [ "$size" -gt "$LIMIT_MB" ]; then
  echo "gpu kit is ${size} MiB, over the ${LIMIT_MB} MiB a device run can carry" >&2
  exit 1
fi
