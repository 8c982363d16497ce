"""Gather a decision's evidence (run it, or reuse a folder of it) and write the decision.

Layout of ``<out>/<UTC time>-<decision name>/`` (the evidence layout of
:mod:`harness.decision.evidence`, so the folder can be given to ``--from`` again)::

    decision.json  decision.html  decision-file.yaml
    runs/baseline/  runs/candidate/     (runs/baseline-1, candidate-1, ... with repeat)
    capacity/<time>-<sweep name>/sweep.json
    fallback_kill/  hot_reload/  rollout/

Everything runs through the library: :func:`harness.run` for the scenarios (each starts and
stops its own stack), the sweep executor for the capacity. A piece of evidence that cannot be
produced (a stack that does not start, an unreadable file) leaves its criteria unknown, with
the reason; Ctrl-C stops the run in progress (its stack stopped) and is re-raised.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from harness.exitcodes import ExitCode
from harness.redact import mask
from harness.runner.progress import ProgressCallback
from harness.scenario import Scenario

from .criteria import judge_all
from .evidence import (
    SINGLE_RUNS,
    EvidenceKey,
    EvidenceSet,
    RunEvidence,
    gather,
    newest_sweep,
    read_run,
    read_sweep,
)
from .model import Decision, EvidenceRecord, decide_outcome, verdict_sentence
from .spec import (
    NEEDS,
    DecisionError,
    DecisionPlan,
    ScenarioSource,
    load_decision,
    override_list,
)

logger = logging.getLogger("harness")
DEFAULT_OUT = Path("reports") / "decisions"
ORDER: tuple[EvidenceKey, ...] = ("runs", "capacity", "fallback_kill", "hot_reload", "rollout")


@dataclass(frozen=True)
class DecisionOutcome:
    """What :func:`decide` produced: the decision, its folder and files."""

    decision: Decision
    folder: Path

    @property
    def exit_code(self) -> ExitCode:
        """0 go, 1 no_go, 4 inconclusive."""
        return self.decision.decision.exit_code

    @property
    def json_path(self) -> Path:
        """``<folder>/decision.json``."""
        return self.folder / "decision.json"

    @property
    def html_path(self) -> Path:
        """``<folder>/decision.html``."""
        return self.folder / "decision.html"


def needed(plan: DecisionPlan) -> set[EvidenceKey]:
    """The evidence the file's criteria read."""
    c = plan.spec.criteria
    return {NEEDS[k] for k in type(c).model_fields if getattr(c, k) is not None}


def decide(
    decision_file: str | Path,
    *,
    out: str | Path | None = None,
    from_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    run_missing: bool = True,
    on_progress: ProgressCallback | None = None,
    stream: TextIO | None = None,
) -> DecisionOutcome:
    """Judge the decision file's criteria and write decision.json and decision.html.

    ``from_dir``: a folder with evidence in the layout above (an earlier decision's folder):
    what it holds is reused, the rest is run unless ``run_missing`` is False (then it is
    missing and its criteria unknown). ``out``: parent of the timestamped decision folder
    (default ``reports/decisions``). ``on_progress``: the runs' progress events;
    ``stream``: the sweep's and this function's progress lines (default stderr).

    Raises :class:`harness.decision.spec.DecisionError` (a ScenarioError: an invalid file,
    naming file:line) and KeyboardInterrupt (the run in progress is stopped first).
    """
    from harness.runner.execute import make_run_dir

    t0 = time.monotonic()
    plan = load_decision(decision_file, overrides)
    if from_dir is not None and not Path(from_dir).is_dir():
        raise DecisionError(f"--from {from_dir}: no such folder")
    _, folder = make_run_dir(Path(out) if out is not None else DEFAULT_OUT, plan.spec.name)
    shutil.copyfile(plan.path, folder / "decision-file.yaml")
    say = _sayer(stream)
    keys = needed(plan)
    ev = gather(Path(from_dir), keys) if from_dir is not None else EvidenceSet()
    records: list[EvidenceRecord] = []
    for key in (k for k in ORDER if k in keys):
        have = _has(ev, key)
        rel = _relative_to(folder)
        if have:
            records.append(EvidenceRecord(source=key, paths=_paths(ev, key, rel), origin="reused"))
            say(f"{key}: reusing {', '.join(_paths(ev, key, rel))}")
            continue
        if not run_missing or key in ev.problems:
            note = ev.problems.get(key) or "not in --from and --no-run given"
            records.append(EvidenceRecord(source=key, origin="missing", note=note))
            ev.problems.setdefault(key, note)
            continue
        t_key = time.monotonic()
        say(f"{key}: running ({_what(plan, key)})")
        _run(plan, key, folder, ev, on_progress, stream)
        records.append(
            EvidenceRecord(
                source=key,
                paths=_paths(ev, key, rel),
                origin="ran" if _has(ev, key) else "missing",
                note=ev.problems.get(key),
                elapsed_s=round(time.monotonic() - t_key, 1),
            )
        )
    criteria = judge_all(plan.spec, ev, _relative_to(folder))
    outcome = decide_outcome([c.status for c in criteria])
    decision = Decision(
        name=plan.spec.name,
        description=plan.spec.description,
        decision_file=str(plan.path),
        decided_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        host=_host(ev),
        decision=outcome,
        sentence=verdict_sentence(plan.spec.name, criteria, outcome),
        exit_code=int(outcome.exit_code),
        criteria=criteria,
        evidence=records,
        elapsed_s=round(time.monotonic() - t0, 1),
    )
    # Masked before it is kept, so the object returned is exactly the file written.
    decision = Decision.model_validate(mask(decision.model_dump(mode="json", by_alias=True)))
    cap = plan.spec.evidence.capacity
    write_decision(decision, folder, ev, (cap.baseline, cap.candidate) if cap else None)
    return DecisionOutcome(decision, folder)


def write_decision(
    decision: Decision,
    folder: Path,
    ev: EvidenceSet,
    capacity_ids: tuple[str, str] | None = None,
) -> None:
    """decision.json (atomically), then decision.html (a broken page never loses the json)."""
    tmp = folder / ".decision.json.tmp"
    tmp.write_text(decision.to_json(), encoding="utf-8")
    tmp.replace(folder / "decision.json")
    from .page import write_page

    try:
        write_page(decision, ev, folder / "decision.html", capacity_ids)
    except Exception as exc:  # the decision stands without its page
        logger.warning("decision.html failed (%s: %s); decision.json kept", type(exc).__name__, exc)


def _sayer(stream: TextIO | None) -> Callable[[str], None]:
    def say(text: str) -> None:
        out = stream or sys.stderr
        out.write(f"[decide] {text}\n")
        out.flush()

    return say


def _relative_to(folder: Path) -> Callable[[Path], str]:
    def rel(p: Path) -> str:
        return os.path.relpath(p.resolve(), folder.resolve())

    return rel


def _has(ev: EvidenceSet, key: EvidenceKey) -> bool:
    if key == "runs":
        return bool(ev.baselines and ev.candidates)
    if key == "capacity":
        return ev.capacity is not None
    return key in ev.singles


def _paths(ev: EvidenceSet, key: EvidenceKey, rel: Callable[[Path], str]) -> list[str]:
    if key == "runs":
        return [rel(r.path) for r in [*ev.baselines, *ev.candidates]]
    if key == "capacity":
        return [rel(ev.capacity.path)] if ev.capacity is not None else []
    run = ev.singles.get(key)
    return [rel(run.path)] if run is not None else []


def _what(plan: DecisionPlan, key: EvidenceKey) -> str:
    ev = plan.spec.evidence
    if key == "runs" and ev.runs is not None:
        r = ev.runs
        return f"{r.baseline} vs {r.candidate}, {r.repeat} run(s) a side"
    if key == "capacity" and ev.capacity is not None:
        return f"sweep {ev.capacity.sweep}"
    src: ScenarioSource | None = getattr(ev, key)
    return src.scenario if src is not None else key


def _scenario(plan: DecisionPlan, file: str, sets: dict[str, object]) -> Scenario:
    from harness.api import load_scenario

    sc = load_scenario(
        plan.resolve(file), override_list(plan.spec.set, sets), has_external_baseline=True
    )
    # The decision gives each run its baseline itself (or none): the scenario's own
    # ``baseline`` section would start another run.
    return sc.model_copy(update={"baseline": None})


def _run(
    plan: DecisionPlan,
    key: EvidenceKey,
    folder: Path,
    ev: EvidenceSet,
    on_progress: ProgressCallback | None,
    stream: TextIO | None,
) -> None:
    """Produce the evidence ``key`` into ``folder`` and record it (or its problem) in ``ev``."""
    from harness.api import run

    spec = plan.spec.evidence
    try:
        if key == "runs":
            assert spec.runs is not None
            r = spec.runs
            base_sc, cand_sc = (
                _scenario(plan, r.baseline, r.set),
                _scenario(plan, r.candidate, r.set),
            )
            ev.baselines, ev.candidates = [], []  # one side in --from is no pair: run both
            for i in range(1, r.repeat + 1):
                tail = "" if r.repeat == 1 else f"-{i}"
                base = run(base_sc, run_dir=folder / "runs" / f"baseline{tail}",
                           on_progress=on_progress)  # fmt: skip
                ev.baselines.append(_read(base.results_path))
                cand = run(cand_sc, baseline=base, run_dir=folder / "runs" / f"candidate{tail}",
                           on_progress=on_progress)  # fmt: skip
                ev.candidates.append(_read(cand.results_path))
        elif key == "capacity":
            assert spec.capacity is not None
            from harness.sweep.execute import run_sweep
            from harness.sweep.loader import load_sweep

            sweep_plan = load_sweep(plan.resolve(spec.capacity.sweep),
                                    override_list(plan.spec.set, spec.capacity.set))  # fmt: skip
            run_sweep(sweep_plan, folder / "capacity", stream)
            found = newest_sweep(folder)
            if found is None:
                raise ValueError("the sweep wrote no sweep.json")
            ev.capacity = read_sweep(found)
        else:
            assert key in SINGLE_RUNS
            src: ScenarioSource | None = getattr(spec, key)
            assert src is not None
            sc = _scenario(plan, src.scenario, src.set)
            outcome = run(sc, run_dir=folder / key, on_progress=on_progress)
            ev.singles[key] = _read(outcome.results_path)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one piece of evidence failing leaves the others to judge
        ev.problems[key] = f"{key} could not be produced: {type(exc).__name__}: {exc}"
        logger.warning("%s", ev.problems[key])


def _read(path: Path) -> RunEvidence:
    return read_run(path)


def _host(ev: EvidenceSet) -> str:
    runs = [*ev.candidates, *ev.baselines, *ev.singles.values()]
    if not runs:
        return "unknown (no run evidence)"
    p = runs[0].results.provenance
    gpu = runs[0].results.summary.gpu
    gpu_words = gpu.name or "GPU" if gpu is not None and gpu.present else (p.gpu or "no GPU")
    return f"{p.cpu_model or 'unknown CPU'} x {p.cpu_count or '?'} cores, {gpu_words}"
