#!/usr/bin/env bash
# A/A control of `harness decide`: run benchmarks/decide_aa.yaml N times (default 5; ~3-5 min
# each on 2 cores) and count each criterion's statuses. Target (issue 18): no criterion
# not_met from noise, i.e. no comparison verdict "worse" and no capacity "lower than the
# baseline" between two identical systems (exit 1 if any). The old pipeline missing the
# design's absolute 30 ms on a busy host is a measurement, not noise: counted, shown, not failed.
#   benchmarks/decide_aa.sh [N] [OUT]
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}
out=${2:-reports/decide-aa}
for i in $(seq 1 "$n"); do
  .venv/bin/harness decide benchmarks/decide_aa.yaml --out "$out" > /dev/null 2>&1
  echo "run $i: exit $?"
done
.venv/bin/python - "$out" <<'PY'
import collections, sys
from pathlib import Path
from harness.decision import Decision
tally = collections.defaultdict(collections.Counter)
noise = 0
runs = [p for p in sorted(Path(sys.argv[1]).glob("*/decision.json")) if p.parent.name != "latest"]
for p in runs:
    d = Decision.model_validate_json(p.read_text(encoding="utf-8"))
    print(f"{p.parent.name}: {d.decision.value}: {d.sentence}")
    for c in d.criteria:
        tally[c.name][c.status.value] += 1
        if any(m.verdict == "worse" for m in c.compared) or "lower than the baseline" in c.why:
            noise += 1
for name, counts in tally.items():
    print(f"{name}: {dict(counts)}")
not_met = sum(c["not_met"] for c in tally.values())
print(f"{len(runs)} A/A decisions, {not_met} criteria not_met, {noise} of them from noise")
sys.exit(1 if noise else 0)
PY
