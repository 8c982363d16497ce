#!/usr/bin/env bash
# One prepared run on a CUDA machine (Python 3.12 and torch preinstalled, no Java, no network):
# install from the kit carried beside the repository (scripts/gpu-kit.sh), build the models, run
# the in-process batch-size curve (the physical limit), sweeps/batching.yaml and
# sweeps/capacity.yaml on the local stack, and leave results and reports in OUT_DIR.
#   scripts/gpu-run.sh OUT_DIR            (GPU_KIT=dir: the kit, default gpu-kit/)
# Without CUDA it runs the same steps in CPU mode (this machine's test of the script);
# GPU_RUN_QUICK=1 shortens every run and budget (the test uses it). Total: under 12 minutes.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${1:?usage: scripts/gpu-run.sh OUT_DIR}" && cd "$1" && pwd)
KIT=${GPU_KIT:-$REPO/gpu-kit}
cd "$REPO"
log() { echo "[gpu-run $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/gpu-run.log" >&2; }
# The kit's wheels and Java are installed afresh into a folder of this run's own: one kept from
# an earlier run may hold another kit's (a stale Java once made every TorchServe start fail).
WORK=$(mktemp -d "${TMPDIR:-/tmp}/signflow-gpu-run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Python: the machine's python3 (on the CUDA machine, the one holding torch) when it already
# has everything (scripts/gpu_deps.py check), else the same interpreter with the kit's wheels
# installed into a folder on PYTHONPATH, ahead of its site-packages. Not a venv: there python3
# is itself a venv's, and a venv made from it with --system-site-packages would see the base
# interpreter's packages, not torch. PYTHON=... picks the interpreter (default: the repository's
# venv where there is one, else python3).
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}   # this checkout's harness, not an installed one
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" scripts/gpu_deps.py check >/dev/null 2>&1; then
  [ -d "$KIT/wheels" ] || { log "$PY lacks packages and there is no kit at $KIT (run scripts/gpu-kit.sh where there is network)"; exit 3; }
  SITE=$WORK/site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$KIT"/wheels/*.whl
  export PYTHONPATH=$PYTHONPATH:$SITE PATH=$SITE/bin:$PATH   # bin: the torchserve launcher
  log "installed $(ls "$KIT/wheels" | wc -l) kit wheels into $SITE"
fi
if ! "$PY" scripts/gpu_deps.py check 2>>"$OUT/gpu-run.log"; then
  log "$PY: requirements unmet (listed above); nothing was started"
  exit 3
fi
MODE=$("$PY" -c 'import torch; print("gpu" if torch.cuda.is_available() else "cpu")')
log "python $PY ($("$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)')), mode $MODE"

# --- Java 17: the kit's runtime when the kit has one (what the CUDA machine uses), else a
# Java >= 17 on PATH.
if [ -f "$KIT/java-17-jre.tar.xz" ]; then
  tar -C "$WORK" -xJf "$KIT/java-17-jre.tar.xz"
  export JAVA_HOME=$WORK/java-17-jre PATH=$WORK/java-17-jre/bin:$PATH
fi
major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1 || true)
if [ "${major:-0}" -lt 17 ]; then
  log "no Java 17: none on PATH and no $KIT/java-17-jre.tar.xz"
  exit 3
fi
log "java: $(command -v java), $(java -version 2>&1 | head -1)"

# --- Models and archives (incremental: a second run reuses them).
for v in 1.0 2.0; do
  [ -f "build/models/$v/metadata.json" ] || "$PY" -m backend_patch.app.ml.train --version "$v" --out "build/models/$v"
  [ -f "build/model-store/signflow-$v.mar" ] || "$PY" -m serving.package_model --version "$v" --models build/models --out build/model-store
done

# --- The physical limit: in-process forward passes per batch size.
SECONDS_PER=2; SETS=()
if [ "${GPU_RUN_QUICK:-0}" = 1 ]; then
  SECONDS_PER=0.3
  SETS=(--set workload.duration_s=4 --set workload.warmup_s=1 --set budget.max_runs=2)
  SETS+=(--set load.search.max=8)
fi
"$PY" benchmarks/batch_curve.py --seconds "$SECONDS_PER" --out "$OUT/batch-curve.json" >/dev/null
log "batch curve: $OUT/batch-curve.json"

# --- The sweeps (exit 1 "no configuration met the constraints" is a result, not a failure).
status=0
for sweep in batching capacity; do
  set +e
  "$PY" -m harness sweep "sweeps/$sweep.yaml" --out "$OUT/sweeps" "${SETS[@]}" \
    --emit-config "$OUT/$sweep-config" 2>>"$OUT/$sweep.stderr.log" | tee "$OUT/$sweep.txt"
  code=${PIPESTATUS[0]}
  set -e
  log "sweep $sweep: exit $code"
  if [ "$code" -ge 2 ]; then status=$code; fi
done
"$PY" - "$OUT" "$MODE" <<'PYEOF'
import json, sys
from pathlib import Path
out, mode = Path(sys.argv[1]), sys.argv[2]
summary = {"mode": mode, "batch_curve": json.loads((out / "batch-curve.json").read_text()), "sweeps": {}}
for doc_path in sorted((out / "sweeps").glob("*/sweep.json")):
    if doc_path.parent.is_symlink():  # sweeps/latest: the last sweep again
        continue
    doc = json.loads(doc_path.read_text())
    summary["sweeps"][doc["name"]] = {
        "sweep": str(doc_path.relative_to(out)),
        "recommendation": doc["recommendation"],
        "capacity": {c["id"]: [c["label"], c["capacity"], c["capacity_note"]] for c in doc["configurations"]},
        "stack_starts": doc["stack_starts"], "runs": doc["budget"]["runs_used"],
    }
(out / "summary.json").write_text(json.dumps(summary, indent=1))
PYEOF
log "done: $OUT/summary.json (exit $status)"
exit $status
