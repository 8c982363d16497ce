"""The evidence a decision reads, typed at the door.

``results.json`` files become :class:`harness.results.model.Results` (through the one reader,
``harness.results.writer.read_results``: version 1 upgraded, errors naming the file) and
``sweep.json`` a :class:`SweepDocument`. A folder of evidence (``harness decide --out``'s, or
``--from DIR`` for CI) has one layout, :data:`LAYOUT`::

    runs/baseline[-N]/results.json  runs/candidate[-N]/results.json
    capacity/<stamp>-<sweep>/sweep.json
    fallback_kill/results.json  hot_reload/results.json  rollout/results.json
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.results.model import Results

EvidenceKey = Literal["runs", "capacity", "fallback_kill", "hot_reload", "rollout"]
SINGLE_RUNS: tuple[EvidenceKey, ...] = ("fallback_kill", "hot_reload", "rollout")


class _Read(BaseModel):
    # A reader of sweep.json: keys this decision does not use are kept, never refused, so
    # a newer sweep.json (more fields) still reads.
    model_config = ConfigDict(extra="allow")


class SearchLevel(_Read):
    """One load level of a capacity search, in run order."""

    sessions: int
    outcome: str = Field(description="pass | fail | machine-limit | error")


class PointFigures(_Read):
    """A sweep point's headline figures (None where not measured)."""

    p95_ms: float | None = None
    inference_p95_ms: float | None = None
    frames_per_s: float | None = None
    inferences_per_s: float | None = None


class SweepPoint(_Read):
    """One run of the sweep."""

    id: str
    config: str
    sessions: int
    run_dir: str
    outcome: str
    why: str | None = None
    figures: PointFigures = Field(default_factory=PointFigures)


class SweepConfiguration(_Read):
    """One configuration and its capacity search."""

    id: str
    label: str = ""
    fps: float | None = None
    status: str
    capacity: int | None = None
    capacity_note: str | None = None
    note: str | None = None
    best_point: str | None = None
    search: list[SearchLevel] = Field(default_factory=list)


class SweepSearchSpec(_Read):
    """``load.search`` as the sweep ran it."""

    start: int
    max: int
    resolution: int


class SweepLoad(_Read):
    """``load`` of sweep.json."""

    search: SweepSearchSpec | None = None


class SweepDocument(_Read):
    """The part of ``sweep.json`` (docs/RESULTS.md "sweep.json") a decision reads."""

    schema_: Literal["signflow.sweep"] = Field(alias="schema")
    schema_version: int
    name: str
    status: str
    constraints: list[str] = Field(default_factory=list)
    load: SweepLoad
    configurations: list[SweepConfiguration]
    points: list[SweepPoint] = Field(default_factory=list)

    def configuration(self, cid: str) -> SweepConfiguration | None:
        """The configuration ``cid`` (None when the sweep has none such)."""
        return next((c for c in self.configurations if c.id == cid), None)

    def point(self, pid: str | None) -> SweepPoint | None:
        """The point ``pid``."""
        return next((p for p in self.points if p.id == pid), None)


@dataclass(frozen=True)
class RunEvidence:
    """One results.json: its path, the typed document, and the document as read (the
    comparison statistics take that mapping: ``harness.analysis.compare``)."""

    path: Path
    results: Results
    document: Mapping[str, Any]


@dataclass(frozen=True)
class SweepEvidence:
    """One sweep.json: its path and the typed document."""

    path: Path
    sweep: SweepDocument

    def point_run(self, config: str, sessions: int) -> RunEvidence | None:
        """The results of ``config``'s last run at ``sessions`` (the one that decided the
        level when search.confirm ran it more than once; None: not run, or not readable)."""
        pt = next(
            (
                p
                for p in reversed(self.sweep.points)
                if p.config == config and p.sessions == sessions
            ),
            None,
        )
        path = self.path.parent / pt.run_dir / "results.json" if pt is not None else None
        if path is None or not path.is_file():
            return None
        try:
            return read_run(path)
        except ValueError:
            return None


@dataclass
class EvidenceSet:
    """Everything a decision judges; a piece left None is missing (its criteria unknown).

    ``problems``: evidence that exists but could not be read or run, by key, in words.
    """

    baselines: list[RunEvidence] = field(default_factory=list)
    candidates: list[RunEvidence] = field(default_factory=list)
    capacity: SweepEvidence | None = None
    singles: dict[EvidenceKey, RunEvidence] = field(default_factory=dict)
    problems: dict[EvidenceKey, str] = field(default_factory=dict)


def read_run(path: Path) -> RunEvidence:
    """A results.json as :class:`RunEvidence`; ValueError names the file and the problem."""
    from harness.results.writer import read_results, results_document

    results = read_results(path)
    return RunEvidence(path, results, results_document(results))


def read_sweep(path: Path) -> SweepEvidence:
    """A sweep.json as :class:`SweepEvidence`; ValueError names the file and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read sweep: {exc.strerror or exc}") from exc
    try:
        return SweepEvidence(path, SweepDocument.model_validate_json(text))
    except ValidationError as exc:
        raise ValueError(f"{path}: not a sweep.json: {_first(exc)}") from None


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def run_dirs(root: Path, side: str) -> list[Path]:
    """``runs/<side>`` or ``runs/<side>-1``, ``-2``... in order (those holding results.json)."""
    runs = root / "runs"
    single = runs / side
    if (single / "results.json").is_file():
        return [single]
    numbered = [p for p in runs.glob(f"{side}-*") if (p / "results.json").is_file()]
    return sorted(numbered, key=lambda p: int(p.name.rsplit("-", 1)[1] or 0))


def newest_sweep(root: Path) -> Path | None:
    """The newest ``capacity/*/sweep.json`` under ``root`` (stamped folder names sort by time)."""
    found = sorted((root / "capacity").glob("*/sweep.json"))
    return found[-1] if found else None


def gather(root: Path, keys: set[EvidenceKey]) -> EvidenceSet:
    """Read the evidence ``keys`` found under ``root`` (the layout above). What is absent is
    left missing; what is present but unreadable is a problem (named, with the file)."""
    ev = EvidenceSet()
    if "runs" in keys:
        try:
            ev.baselines = [read_run(d / "results.json") for d in run_dirs(root, "baseline")]
            ev.candidates = [read_run(d / "results.json") for d in run_dirs(root, "candidate")]
        except ValueError as exc:
            ev.problems["runs"] = str(exc)
            ev.baselines, ev.candidates = [], []
    if "capacity" in keys and (sweep := newest_sweep(root)) is not None:
        try:
            ev.capacity = read_sweep(sweep)
        except ValueError as exc:
            ev.problems["capacity"] = str(exc)
    for key in SINGLE_RUNS:
        path = root / key / "results.json"
        if key in keys and path.is_file():
            try:
                ev.singles[key] = read_run(path)
            except ValueError as exc:
                ev.problems[key] = str(exc)
    return ev
