#!/usr/bin/env bash
# Build build/model-store/signflow-<version>.mar (default 1.0) with the project's venv.
# Usage: serving/package_model.sh [VERSION] [extra serving.package_model options]
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-1.0}"
shift || true
exec .venv/bin/python -m serving.package_model --version "$version" \
  --models build/models --out build/model-store "$@"
