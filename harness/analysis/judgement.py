"""``judgement.json``: the rollout judged from a production Prometheus (``harness judge``).

Its ``rollout`` is the in-run judge's own :class:`~harness.results.model.RolloutRecord`
(results.json's ``rollout``: same steps, looks, criteria, evidence and cohort figures), with
its times in seconds from ``start_unix_s``; around it, where the figures came from: the
server, the interval, the query step, the series read (with a link to each), the bucket edges
that bound every latency figure's resolution, and the thinning of frames to observations.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness.results.model import QueryRecord, RolloutRecord, Unit, _Model
from harness.scenario.models import RolloutJudge

SCHEMA: Literal["signflow-harness/judgement"] = "signflow-harness/judgement"


class JudgementSource(_Model):
    """Where the judged figures came from."""

    prometheus_url: str = Field(description="the server's HTTP API")
    start_unix_s: Annotated[float, Unit("s", "the interval's start, unix time")]
    end_unix_s: Annotated[float, Unit("s", "the interval's end, unix time")]
    start: str = Field(description="the interval's start, ISO 8601 UTC")
    end: str = Field(description="the interval's end, ISO 8601 UTC")
    step_s: Annotated[float, Unit("s", "range-query resolution: seconds between instants")]
    queries: list[QueryRecord] = Field(default_factory=list)
    frame_buckets_ms: list[float] = Field(
        default_factory=list, description="finite upper edges of the frame latency buckets (ms)"
    )
    inference_buckets_ms: list[float] = Field(
        default_factory=list,
        description="finite upper edges of the inference latency buckets (ms)",
    )
    fps: Annotated[float | None, Unit("1/s", "frames a session sends per second (thinning)")] = None
    frames_per_unit: Annotated[
        float, Unit("count", "frames per sequential-test observation (one per 0.1 s a session)")
    ] = 1.0


class JudgeUsed(_Model):
    """The judge applied: the criteria and how steps were looked at."""

    scenario: str | None = Field(None, description="the scenario whose rollout block was used")
    criteria: RolloutJudge
    settle_s: Annotated[float, Unit("s", "left out after each change")]
    look_every_s: Annotated[float, Unit("s", "between looks")]
    budget_s: Annotated[float | None, Unit("s", "a step's evidence budget (None: none)")] = None
    final_percent: Annotated[int, Unit("%", "the rollout's last step")] = 100


class ProductionJudgement(_Model):
    """The whole ``judgement.json`` of ``harness judge --prometheus``."""

    schema_: Literal["signflow-harness/judgement"] = Field(SCHEMA, alias="schema")
    judged_at: str = Field(description="when the judge ran, ISO 8601 UTC")
    decision: Literal["go", "no_go", "inconclusive", "continue"] = Field(
        description="go: completed or the last step advanced; no_go: a step aborted; "
        "inconclusive: a step ran out of evidence; continue: the last step is not decided yet"
    )
    exit_code: int = Field(description="harness.exitcodes.ExitCode of the command")
    sentence: str = Field(description="the outcome in one sentence")
    source: JudgementSource
    judge: JudgeUsed
    rollout: RolloutRecord


class FigureAgreement(_Model):
    """One cohort figure both judges reported: the in-run value (client side: scheduled ->
    reply), Prometheus's (server side: received -> reply built, from buckets) and the bucket
    (lo, hi] holding Prometheus's value: its resolution."""

    figure: str = Field(description='"torchserve frame p95"-style name')
    in_run_ms: Annotated[float | None, Unit("ms", "the in-run judge's figure")] = None
    prometheus_ms: Annotated[float | None, Unit("ms", "the Prometheus judge's figure")] = None
    bucket_ms: list[float | None] | None = Field(
        None, description="[lo, hi] of the bucket holding the Prometheus figure (None: inf)"
    )
    within_bucket: bool | None = Field(
        None, description="the in-run figure lies inside that bucket"
    )


class StepAgreement(_Model):
    """One rollout step as both judges saw it."""

    percent: Annotated[int, Unit("%", "the step's share")]
    in_run: str | None = Field(None, description="the in-run judge's decision")
    prometheus: str | None = Field(None, description="the Prometheus judge's decision")
    same: bool = Field(description="same decision")
    looks_in_run: Annotated[int, Unit("count", "looks the in-run judge took")] = 0
    looks_prometheus: Annotated[int, Unit("count", "looks the Prometheus judge took")] = 0
    counts: dict[str, list[int]] = Field(
        default_factory=dict,
        description='"torchserve frames" -> [in-run, Prometheus] (sessions, frames, '
        "classifications per cohort at the deciding look)",
    )
    figures: list[FigureAgreement] = Field(default_factory=list)


class Agreement(_Model):
    """The in-run judgement and ``harness judge --prometheus`` over the same run, step by
    step (benchmarks/prometheus_judge_agreement.py, the end-to-end test)."""

    steps: list[StepAgreement] = Field(default_factory=list)
    same_decisions: bool = Field(description="every step judged in-run has the same decision")
