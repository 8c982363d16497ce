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

from harness.results.model import RolloutRecord, Unit, _Model
from harness.scenario.models import RolloutJudge

SCHEMA: Literal["signflow-harness/judgement"] = "signflow-harness/judgement"


class QueryRecord(_Model):
    """One series the judge read: the expression, what it is, the server's graph of it."""

    expr: str
    about: str
    link: str = Field(description="the Prometheus graph page of this expression, the interval")


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
