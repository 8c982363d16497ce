#!/usr/bin/env bash
# The compose scenarios end to end on a real Docker engine with locally built images (CI).
# Each must pass its gates: zero error replies, and what a user feels (first fallback <= 0.3 s
# after the kill, frame/outage/recovery p99 <= 250 ms, no session stalled > 300 ms; a reload with
# >= 30 inferences/s in flight, no window lost). Afterwards no container, network or volume of
# any run may be left.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-reports/ci-compose}
harness=.venv/bin/harness
# Container start-up and the in-container model load share CI's 2 cores with the load
# generator; at the default 5 ms the self-check flagged a hot-reload run INVALID (1.1 % of
# frames > 5 ms late) in CI. Judge lateness at 25 ms as the e2e tests do, and run a scenario once
# more when lateness alone spoilt it: a generator that stalls twice still fails this script.
judge_late=workload.late_threshold_ms=25

# Exit 0 when the latest run under $1 is INVALID only because the generator fell behind.
only_generator_late() {
  local latest
  latest=$(ls -t "$1"/*/results.json 2>/dev/null | head -1) || return 1
  .venv/bin/python - "$latest" <<'PY'
import json, sys
from harness.load.selfcheck import FELL_BEHIND
reasons = json.load(open(sys.argv[1])).get("invalid_reasons") or []
ok = reasons and all(r.startswith(FELL_BEHIND) for r in reasons)
sys.exit(0 if ok else 1)
PY
}

for scenario in fallback-kill hot-reload; do
  for attempt in 1 2; do
    echo "== compose: scenarios/$scenario.yaml (attempt $attempt)" >&2
    rc=0
    "$harness" run "scenarios/$scenario.yaml" \
      --set stack.driver=compose \
      --set "$judge_late" \
      --set 'stack.compose.overrides=["../docker-compose.local.yml"]' \
      --out "$out/$scenario" || rc=$?
    # A run spoilt by a busy machine (and only that) gets one more try; anything else counts.
    if [ "$rc" = 2 ] && [ "$attempt" = 1 ] && only_generator_late "$out/$scenario"; then
      echo "attempt 1 of $scenario: generator fell behind on a busy machine; running again" >&2
      continue
    fi
    [ "$rc" = 0 ] || exit "$rc"
    break
  done
  # --out is the parent folder: each run lands in <out>/<UTC time>-<name>/.
  results=$(ls -t "$out/$scenario"/*/results.json | head -1)
  .venv/bin/python - "$results" "$scenario" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
kind = {"fallback-kill": "outage", "hot-reload": "reload"}[sys.argv[2]]
s = doc["summary"]
assert doc["valid"], doc["invalid_reasons"]
assert s["errors"]["total"] == 0, s["errors"]
faults = [f for f in doc["faults"] if f["kind"] == kind]
assert faults, f"no {kind} measured"
# The figures the scenarios' gates judge (what a user feels) must have been measured; the gates
# themselves (first fallback <= 0.3 s, p99s <= 250 ms, stall <= 300 ms, no window lost in a reload) made
# the run above exit 1 if they failed.
assert s["stall"]["max_ms"] is not None, s["stall"]
f = faults[0]
if kind == "outage":
    for key in ("time_to_first_fallback_s", "time_to_recover_s", "outage_max_stall_ms"):
        assert f[key] is not None, key
    assert f["outage_latency_ms"]["p99"] is not None
    assert f["recovery_latency_ms"]["p99"] is not None, "no recovery window measured"
    felt = (f"first fallback {f['time_to_first_fallback_s']:.3f} s, outage p99 "
            f"{f['outage_latency_ms']['p99']} ms, recovery p99 {f['recovery_latency_ms']['p99']} ms")
else:
    assert f["time_to_first_new_s"] is not None and f["fallbacks"] is not None
    felt = (f"{s['throughput']['inferences_per_s']:.1f} inferences/s, reload errors "
            f"{f['errors']}, fallbacks {f['fallbacks']}")
print(f"{sys.argv[2]}: ok, frame p99 {s['frame']['latency_ms']['p99']} ms, max stall "
      f"{s['stall']['max_ms']:.0f} ms, {felt}")
print(f"{kind} = {json.dumps(f)}")
PY
done

left=$(docker ps -aq --filter label=com.docker.compose.project | wc -l)
nets=$(docker network ls -q --filter label=com.docker.compose.project | wc -l)
vols=$(docker volume ls -q --filter label=com.docker.compose.project | wc -l)
if [ "$left$nets$vols" != "000" ]; then
  echo "compose runs left resources behind: $left containers, $nets networks, $vols volumes" >&2
  docker ps -a; docker network ls; docker volume ls
  exit 1
fi
echo "compose scenarios passed; nothing left behind" >&2
