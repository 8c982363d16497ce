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
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

# The columns of a live row, in CSV order (LiveStats fields, flattened; ``cohort_*`` are the
# open sessions by rollout cohort; ``rollout_percent``: the last percent the harness set).
COLUMNS = (
    "t", "frames_per_s", "p95_ms", "errors", "fallback_share", "sessions_connected",
    "sessions_started", "sessions_ended", "sessions_refused", "cohort_torchserve", "cohort_local",
    "generator_cpu_percent", "rollout_percent",
)  # fmt: skip


def row_of(stats: Any, rollout_percent: int | None = None) -> dict[str, Any]:
    """A live row from a ``LiveStats`` snapshot."""
    d = asdict(stats)
    cohorts = d.pop("cohorts", None) or {}
    return {
        "t": round(d["elapsed"], 3),
        "frames_per_s": round(d["frames_per_s"], 2),
        "p95_ms": None if d["p95_ms"] is None else round(d["p95_ms"], 3),
        "errors": d["errors"],
        "fallback_share": d["fallback_share"],
        "sessions_connected": d["sessions_connected"],
        "sessions_started": d["sessions_started"],
        "sessions_ended": d["sessions_ended"],
        "sessions_refused": d["sessions_refused"],
        "cohort_torchserve": cohorts.get("torchserve", 0),
        "cohort_local": cohorts.get("local", 0),
        "generator_cpu_percent": d["generator_cpu_percent"],
        "rollout_percent": rollout_percent,
    }


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
        if self._csv is not None:
            self._csv.writeheader()
            self._out.flush()

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
    """Prometheus gauges ``harness_<column>`` of the latest live row, served over HTTP."""

    def __init__(self, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        self.registry = CollectorRegistry()
        self._gauges = {
            k: Gauge(
                f"harness_{k}",
                f"Live {k.replace('_', ' ')} of the running harness",
                registry=self.registry,
            )
            for k in COLUMNS
        }
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._server.server_address[1])
        self.host = host

    def update(self, row: dict[str, Any]) -> None:
        """Set every gauge from ``row`` (a None figure becomes NaN)."""
        for k, g in self._gauges.items():
            v = row.get(k)
            g.set(float("nan") if v is None else float(v))

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
