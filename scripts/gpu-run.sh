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

# --- Python: the repository's venv when it has everything, else one built from the kit.
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}   # this checkout's harness, not an installed one
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import ts, model_archiver, harness' 2>/dev/null; then
    PY=.venv/bin/python
  else
    [ -d "$KIT/wheels" ] || { log "no kit at $KIT (run scripts/gpu-kit.sh where there is network)"; exit 2; }
    VENV=${GPU_VENV:-/tmp/signflow-gpu-venv}
    python3 -m venv --system-site-packages "$VENV"   # keeps the preinstalled torch
    "$VENV/bin/python" -m pip install -q --no-index --find-links "$KIT/wheels" \
      -r "$KIT/requirements.txt"
    PY=$VENV/bin/python
  fi
fi
MODE=$("$PY" -c 'import torch; print("gpu" if torch.cuda.is_available() else "cpu")')
log "python $PY, mode $MODE"

# --- Java 17: on PATH already, or unpacked from the kit's Debian packages (no root needed).
major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1 || true)
if [ "${major:-0}" -lt 17 ]; then
  ROOT=$KIT/java-root
  if [ ! -d "$ROOT/usr/lib/jvm" ]; then
    for deb in "$KIT"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
  fi
  JAVA_HOME=$(dirname "$(dirname "$(find "$ROOT/usr/lib/jvm" -path '*/bin/java' | head -1)")")
  export JAVA_HOME PATH=$JAVA_HOME/bin:$PATH
fi
log "java: $(java -version 2>&1 | head -1)"

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
