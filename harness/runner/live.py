"""Live outputs while a run goes (the scenario's ``live`` block); the final results are unchanged.

- :class:`LiveFile`: one row per second of the generator's live figures, as JSON lines or CSV,
  to a file (flushed per row, so ``tail -f`` and a reading test see it at once) or stdout (``-``);
- :class:`LiveExporter`: the same figures as Prometheus gauges on an HTTP endpoint of the
  harness's own (prometheus-client, its own registry, loopback unless told otherwise), so a
  Grafana panel can watch a long run.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

# The columns of a live row, in CSV order (LiveStats fields, flattened). ``run``, ``scenario``,
# ``role``: which run of the invocation the row is (RunLabels), so the baseline's and the
# candidate's rows of one ``harness run`` on one stream (stdout, a Prometheus scrape) stay two
# series. ``fallback_share``: the TorchServe cohort's classifications answered locally in the
# last second (harness.results.model.fallback_share; the old pipeline is never a fallback), of
# ``fallbacks`` / ``inferences_torchserve_cohort``; ``cohort_*``: the open sessions by rollout
# cohort (the backend's route: torchserve or local = old pipeline); ``rollout_percent``: the
# last percent the harness set.
LABELS = ("run", "scenario", "role")
COLUMNS = (
    *LABELS, "t", "frames_per_s", "p95_ms", "errors", "fallback_share", "fallbacks",
    "inferences_torchserve_cohort", "inferences_old_pipeline", "sessions_connected",
    "sessions_started", "sessions_ended", "sessions_refused", "cohort_torchserve", "cohort_local",
    "generator_cpu_percent", "rollout_percent",
)  # fmt: skip
Role = Literal["baseline", "candidate"]


@dataclass(frozen=True)
class RunLabels:
    """Which run a live row belongs to: ``run`` its run id, ``scenario`` its scenario's name,
    ``role`` baseline (a baseline run of the invocation) or candidate (the run compared)."""

    run: str = ""
    scenario: str = ""
    role: Role = "candidate"


def row_of(
    stats: Any, rollout_percent: int | None = None, labels: RunLabels | None = None
) -> dict[str, Any]:
    """A live row from a ``LiveStats`` snapshot."""
    d = asdict(stats)
    cohorts = d.pop("cohorts", None) or {}
    ident = labels or RunLabels()
    return {
        "run": ident.run,
        "scenario": ident.scenario,
        "role": ident.role,
        "t": round(d["elapsed"], 3),
        "frames_per_s": round(d["frames_per_s"], 2),
        "p95_ms": None if d["p95_ms"] is None else round(d["p95_ms"], 3),
        "errors": d["errors"],
        "fallback_share": d["fallback_share"],
        "fallbacks": d.get("fallbacks", 0),
        "inferences_torchserve_cohort": d.get("inferences_torchserve_cohort", 0),
        "inferences_old_pipeline": d.get("inferences_old_pipeline", 0),
        "sessions_connected": d["sessions_connected"],
        "sessions_started": d["sessions_started"],
        "sessions_ended": d["sessions_ended"],
        "sessions_refused": d["sessions_refused"],
        "cohort_torchserve": cohorts.get("torchserve", 0),
        "cohort_local": cohorts.get("local", 0),
        "generator_cpu_percent": d["generator_cpu_percent"],
        "rollout_percent": rollout_percent,
    }


# Streams (stdout) that already carry a CSV header: the baseline and the candidate run of one
# invocation write to the same stdout, and a second header would be a bad row to a CSV reader.
_HEADED: set[int] = set()


class LiveFile:
    """Writes live rows as JSON lines or CSV; ``path`` ``-`` is stdout."""

    def __init__(self, path: str | Path, fmt: str = "jsonl") -> None:
        if fmt not in ("jsonl", "csv"):
            raise ValueError(f"live.format must be jsonl or csv, got {fmt!r}")
        self.fmt = fmt
        self._own = str(path) != "-"
        self._out: TextIO = (
            open(path, "w", encoding="utf-8", newline="") if self._own else sys.stdout  # noqa: SIM115
        )
        self._csv = csv.DictWriter(self._out, COLUMNS) if fmt == "csv" else None
        if self._csv is not None and (self._own or id(self._out) not in _HEADED):
            self._csv.writeheader()
            self._out.flush()
            if not self._own:
                _HEADED.add(id(self._out))

    def write(self, row: dict[str, Any]) -> None:
        """One row, flushed."""
        if self._csv is not None:
            self._csv.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
        else:
            self._out.write(json.dumps(row, separators=(",", ":")) + "\n")
        self._out.flush()

    def close(self) -> None:
        """Close the file (stdout is left open)."""
        if self._own:
            self._out.close()


class LiveExporter:
    """Prometheus gauges ``harness_<column>{run, scenario, role}`` of the latest live row,
    served over HTTP (the labels keep a baseline and a candidate run two series)."""

    def __init__(self, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        self.registry = CollectorRegistry()
        self._gauges = {
            k: Gauge(
                f"harness_{k}",
                _HELP.get(k, f"Live {k.replace('_', ' ')} of the running harness"),
                LABELS,
                registry=self.registry,
            )
            for k in COLUMNS
            if k not in LABELS
        }
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._server.server_address[1])
        self.host = host

    def update(self, row: dict[str, Any]) -> None:
        """Set every gauge of ``row``'s run from ``row`` (a None figure becomes NaN)."""
        labels = [str(row.get(k) or "") for k in LABELS]
        for k, g in self._gauges.items():
            v = row.get(k)
            g.labels(*labels).set(float("nan") if v is None else float(v))

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


_HELP = {
    "fallback_share": "Share of the TorchServe cohort's classifications answered locally in the "
    "last second (0 when none of them were, or the run has no TorchServe cohort: the old "
    "pipeline is never a fallback; NaN without classifications)",
    "fallbacks": "TorchServe-cohort classifications answered locally in the last second",
    "inferences_torchserve_cohort": "Classifications of the TorchServe cohort in the last second",
    "inferences_old_pipeline": "Classifications of the old-pipeline cohort in the last second",
}
