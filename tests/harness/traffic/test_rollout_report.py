"""The report shows a rollout's steps (cohorts side by side, decision, evidence) and the
session traffic, and marks each rollout change on the charts like a timeline event."""

from __future__ import annotations

import json
from pathlib import Path

from harness.report import build_report
from harness.report.render import build_context

FIXTURE = Path(__file__).resolve().parents[2] / "report" / "fixtures"


def _figures(ms: float, local: float | None) -> dict:
    lat = {"p50": ms / 4, "p95": ms, "p99": ms * 2}
    return {"sessions": 3, "frames": 700, "inferences": 13, "frame_latency_ms": lat,
            "inference_latency_ms": lat, "errors": 0, "error_share": 0.0, "judged_signs": 13,
            "accuracy": 1.0, "local_share": local}  # fmt: skip


def _doc() -> dict:
    doc = json.loads((FIXTURE / "recorded-quickstart.results.json").read_text())
    ev = {"at_s": 5.0, "action": "set_rollout", "params": {"percent": 10}, "started_s": 5.0,
          "finished_s": 5.02, "ok": True, "error": None, "result": None,
          "source": "rollout"}  # fmt: skip
    doc["events"] = [ev]
    doc["rollout"] = {
        "outcome": "aborted", "failed_step": 0, "events": [ev],
        "reason": "step 1 (10 %) aborted: fallback: 92% of the TorchServe cohort's 13 "
                  "classifications answered locally (allowed 20%)",
        "steps": [{"step": 0, "percent": 10, "set_s": 5.0, "decision": "abort",
                   "looks": [{"at_s": 8.0 + i, "decision": "continue",
                              "status": {"fallback": "n/a"}} for i in range(3)]
                   + [{"at_s": 11.0, "decision": "abort", "status": {"fallback": "fail"}}],
                   "judgements": [
            {"decision": "abort", "reason": "fallback: 92% answered locally", "at_s": 11.0,
             "window_s": [6.0, 10.0], "look": 4,
             "criteria": [{"criterion": "fallback", "status": "fail", "why": "92% locally"}],
             "figures": {"torchserve": _figures(205.0, 0.92), "local": _figures(6.0, None)}},
        ]}],
    }  # fmt: skip
    doc["summary"]["traffic"] = {
        "planned": 89, "started": 89, "ended": 88, "refused": 1, "disconnected": 0,
        "cohorts": {"local": 80, "torchserve": 9},
        "lifetime_s": {"p50": 10.4, "p95": 10.5, "max": 10.6, "mean": 10.0, "count": 88},
        "connect_ms": {"p50": 3.0, "p95": 33.0, "max": 70.0, "mean": 6.0, "count": 89},
        "close_ms": {"p50": 0.6, "p95": 4.2, "max": 15.8, "mean": 1.8, "count": 88},
    }  # fmt: skip
    return doc


def test_rollout_table_and_traffic_in_the_report(tmp_path: Path) -> None:
    doc = _doc()
    ctx = build_context(doc, None)
    (row,) = ctx["rollout"]["rows"]
    assert row["decision"] == "abort" and row["percent"] == 10
    assert row["frame_p95"] == "205 ms / 6.00 ms"  # TorchServe cohort / old cohort
    assert row["local_share"] == "92.0 %"
    assert row["criteria"] == ["fallback: fail — 92% locally"]
    # every look on the run clock, and the one that decided
    assert row["looks"] == "4 looks, 8.00 s – 11.0 s: ···X (decided at look 4, 11.0 s)"
    traffic = dict(ctx["traffic"])
    assert traffic["Sessions started / ended / refused / dropped"] == "89 / 88 / 1 / 0"
    html = build_report(doc, None, tmp_path / "report.html").read_text()
    assert 'id="rollout-table"' in html and "ABORT" in html and "aborted" in html
    assert "···X" in html and "evidence at the deciding look" in html
    assert "Session traffic" in html
    # The rollout change is in the events table like any timeline event.
    assert "rollout 10 %" in html


def test_an_inconclusive_rollout_says_what_would_settle_it() -> None:
    doc = _doc()
    ro = doc["rollout"]
    reason = "step 1 (10 %) inconclusive after 4 looks (36 s), kept at 10 %: ..."
    ro.update(outcome="inconclusive", failed_step=None, inconclusive_step=0, reason=reason)
    step = ro["steps"][0]
    step["decision"] = "inconclusive"
    step["looks"][-1]["decision"] = "inconclusive"
    judgement = step["judgements"][0]
    judgement.update(decision="inconclusive",
                     settle="inference.p50 latency: at 2 sessions/s and 10 %, 5 more "
                            "classifications need ~12 s more")  # fmt: skip
    doc["verdict"], doc["valid"], doc["invalid_reasons"] = "inconclusive", True, []
    ctx = build_context(doc, None)
    (row,) = ctx["rollout"]["rows"]
    assert row["looks"].endswith("···? (decided at look 4, 11.0 s)")
    assert row["settle"].startswith("inference.p50 latency: at 2 sessions/s and 10 %")
    assert ctx["rollout"]["outcome"] == "inconclusive"
    # its own verdict, never "error" nor "failed"
    assert ctx["verdict"]["status"] == "inconclusive"
    assert ctx["verdict"]["headline"].startswith("INCONCLUSIVE: the rollout ran out of evidence")
    assert ctx["verdict"]["reasons"][0] == reason
