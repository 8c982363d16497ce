"""Evidence for the decision tests, built from the recorded and synthetic results fixtures
(tests/report/fixtures) and a sweep.json shaped like ``harness sweep`` writes it.

Imported as a plain module (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from harness.decision.evidence import RunEvidence, SweepDocument, SweepEvidence, read_run

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "report" / "fixtures"
SWEEP_FIXTURE = ROOT / "tests" / "harness" / "sweep" / "fixtures" / "batching-sweep.json"

# The synthetic fixtures, valid runs: the old pipeline on 2 cores (frame p95 42 ms, inference
# p95 65 ms, no GPU) and TorchServe on an H100 (frame p95 15 ms, inference p95 22 ms, GPU 48 %).
OLD = "synthetic-baseline.results.json"
GPU_TS = "synthetic-gpu-torchserve.results.json"
KILL = "synthetic-fallback-kill.results.json"
RELOAD = "synthetic-hot-reload.results.json"
INVALID_KILL = "recorded-fallback-kill-invalid.results.json"


def fixture(name: str) -> RunEvidence:
    """A results fixture read through the decision's typed reader."""
    return read_run(FIXTURES / name)


def one_workload(baseline: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
    """``baseline`` declared at ``candidate``'s workload. The synthetic fixtures were recorded
    at different loads (8 and 32 sessions); a decision compares runs of ONE workload (its
    ``runs.set`` applies to both), and the comparison refuses verdicts between unlike ones
    (``test_unlike_workloads_leave_latency_unknown``). The logic tests judge the criteria on
    the fixtures' figures, so the pair is declared like for like."""
    doc = copy.deepcopy(baseline)
    doc.setdefault("scenario", {})["workload"] = copy.deepcopy(
        (candidate.get("scenario") or {}).get("workload")
    )
    return doc


def aligned(baseline: RunEvidence, candidate: RunEvidence) -> RunEvidence:
    """``baseline`` as :func:`one_workload` declares it, read again through the typed model."""
    from harness.results.model import Results

    doc = one_workload(dict(baseline.document), dict(candidate.document))
    return RunEvidence(baseline.path, Results.model_validate(doc), doc)


def edited(run: RunEvidence, **summary: Any) -> RunEvidence:
    """``run`` with summary fields replaced (``frame__latency_ms__p95=50``: a dotted path)."""
    doc = copy.deepcopy(dict(run.document))
    for key, value in summary.items():
        node = doc["summary"]
        parts = key.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    from harness.results.model import Results

    return RunEvidence(run.path, Results.model_validate(doc), doc)


def level(sessions: int, outcome: str) -> dict[str, Any]:
    """One level of a capacity search."""
    return {"sessions": sessions, "outcome": outcome}


def sweep_doc(
    base_levels: list[dict[str, Any]],
    cand_levels: list[dict[str, Any]],
    *,
    fps: float = 30.0,
    resolution: int = 8,
    search_max: int = 64,
) -> dict[str, Any]:
    """A sweep.json of two configurations (c01 old pipeline, c02 TorchServe) whose searches
    visited ``*_levels``; each point's frames/s is sessions x fps (every frame answered)."""
    points = []
    configs = []
    for cid, label, levels in (
        ("c01", "use_torchserve=False", base_levels),
        ("c02", "use_torchserve=True", cand_levels),
    ):
        ids = []
        for lv in levels:
            pid = f"{cid}-s{lv['sessions']:04d}"
            ids.append(pid)
            points.append(
                {
                    "id": pid,
                    "config": cid,
                    "sessions": lv["sessions"],
                    "run_dir": f"{cid}/s{lv['sessions']:04d}",
                    "outcome": lv["outcome"],
                    "why": None,
                    "figures": {
                        "p95_ms": 10.0 if lv["outcome"] == "pass" else 80.0,
                        "inference_p95_ms": 20.0,
                        "frames_per_s": lv["sessions"] * fps,
                        "inferences_per_s": lv["sessions"] * 0.57,
                    },
                }
            )
        passing = [lv["sessions"] for lv in levels if lv["outcome"] == "pass"]
        best = f"{cid}-s{max(passing):04d}" if passing else None
        configs.append(
            {
                "id": cid,
                "label": label,
                "fps": fps,
                "status": "met" if passing else "not met",
                "capacity": None,
                "capacity_note": None,
                "note": None,
                "best_point": best,
                "points": ids,
                "search": levels,
            }
        )
    return {
        "schema": "signflow.sweep",
        "schema_version": 1,
        "name": "capacity",
        "status": "complete",
        "constraints": ["frame.latency_ms.p95 < 30", "errors.total == 0"],
        "load": {"search": {"start": 8, "max": search_max, "resolution": resolution}},
        "configurations": configs,
        "points": points,
    }


def sweep_evidence(doc: dict[str, Any], path: Path | None = None) -> SweepEvidence:
    """The typed evidence of a sweep document."""
    return SweepEvidence(path or Path("capacity/x/sweep.json"), SweepDocument.model_validate(doc))


def write_from_dir(
    root: Path,
    *,
    baseline: str = OLD,
    candidate: str = GPU_TS,
    sweep: dict[str, Any] | None = None,
    kill: str | None = KILL,
    reload: str | None = RELOAD,
) -> Path:
    """A folder in ``harness decide``'s evidence layout (what ``--from`` reads)."""
    docs = {side: json.loads((FIXTURES / name).read_text(encoding="utf-8"))
            for side, name in (("baseline", baseline), ("candidate", candidate))}  # fmt: skip
    docs["baseline"] = one_workload(docs["baseline"], docs["candidate"])
    for side, doc in docs.items():
        (root / "runs" / side).mkdir(parents=True)
        (root / "runs" / side / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    if sweep is not None:
        (root / "capacity" / "20260101T000000Z-capacity").mkdir(parents=True)
        (root / "capacity" / "20260101T000000Z-capacity" / "sweep.json").write_text(
            json.dumps(sweep), encoding="utf-8"
        )
    for key, name in (("fallback_kill", kill), ("hot_reload", reload)):
        if name is not None:
            (root / key).mkdir(parents=True)
            (root / key / "results.json").write_bytes((FIXTURES / name).read_bytes())
    return root


def decision_file(path: Path, criteria: str, evidence: str | None = None) -> Path:
    """A decision file at ``path`` naming the repository's scenarios (absolute paths)."""
    scen = ROOT / "scenarios"
    ev = evidence or (
        f"  runs: {{baseline: {scen / 'baseline.yaml'}, candidate: {scen / 'torchserve.yaml'}}}\n"
        f"  capacity: {{sweep: {ROOT / 'sweeps' / 'capacity.yaml'}}}\n"
        f"  fallback_kill: {{scenario: {scen / 'fallback-kill.yaml'}}}\n"
        f"  hot_reload: {{scenario: {scen / 'hot-reload.yaml'}}}\n"
        f"  rollout: {{scenario: {scen / 'canary.yaml'}}}\n"
    )
    path.write_text(f"name: test-decision\nevidence:\n{ev}criteria:\n{criteria}", encoding="utf-8")
    return path
