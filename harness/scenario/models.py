"""Pydantic v2 models of a scenario file (docs/HARNESS.md). Every model forbids unknown keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from serving.settings import TorchServeSettings

from .gates import GateField

# Where the local and compose stacks take their model archives (signflow-<version>.mar).
MODEL_STORE = Path(__file__).resolve().parents[2] / "build" / "model-store"
# Upper bounds that keep a typo from becoming a day-long run or an overflowed timer.
MAX_DURATION_S = 86_400.0  # one day
MAX_TIMEOUT_S = 3_600.0


class _Strict(BaseModel):
    # No NaN/inf anywhere: `duration_s: .inf` would run forever, `.nan` compares false to all.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TorchServeSpec(TorchServeSettings):
    """TorchServe settings of a local/compose stack: ``serving.settings.TorchServeSettings``
    as it is (the one set of names, units, defaults and ranges; also unknown keys, NaN and inf
    refused), so an error here names ``stack.torchserve.<field>`` with file:line."""


class BackendSpec(_Strict):
    """Backend process settings (extra env vars are passed through, secrets masked in results)."""

    inference_workers: int = Field(1, ge=1, le=64)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("env", mode="before")
    @classmethod
    def _scalars_as_text(cls, value: object) -> object:
        # Environment values are text; YAML reads `40` and `true` as numbers/booleans. Turn
        # those back into the text the backend would parse (dates etc. still fail: quote them).
        if not isinstance(value, dict):
            return value
        return {
            k: ("true" if v else "false") if isinstance(v, bool)
            else str(v) if isinstance(v, int | float) else v
            for k, v in value.items()
        }  # fmt: skip


class ExternalSpec(_Strict):
    """URLs of an already running system. Tokens are given as env var NAMES, never values."""

    ws_url: str
    http_url: str
    backend_metrics_url: str | None = None
    torchserve_metrics_url: str | None = None
    torchserve_management_url: str | None = None
    torchserve_token_env: str | None = None
    admin_token_env: str | None = None
    model_name: str = "signflow"


class ComposeSpec(_Strict):
    """A docker compose project (driver ``compose``). Paths are relative to the scenario file."""

    file: str | None = None  # None: the repository's docker-compose.yml
    overrides: list[str] = Field(default_factory=list)
    project_name: str | None = None  # None: a fresh unique name per run
    gpu: bool | None = None  # None: reserve a GPU only when the engine has the NVIDIA runtime


class PrometheusSpec(_Strict):
    """A real Prometheus server in the stack: a process beside the local stack, the compose
    file's ``prometheus`` service (profile ``monitoring``) on compose. It scrapes the backend
    and TorchServe every ``scrape_interval_s`` (s; compose: the image's 1 s) and evaluates
    ``monitoring/rules`` (per-cohort recording rules and rollback alerts); the results record
    its URL."""

    enabled: bool = False
    scrape_interval_s: float = Field(1.0, ge=0.1, le=60.0)


class StackSpec(_Strict):
    """Which system is under test and how it is configured."""

    driver: Literal["local", "compose", "external"] = "local"
    use_torchserve: bool = False
    rollout_percent: int = Field(100, ge=0, le=100)
    torchserve: TorchServeSpec = Field(default_factory=TorchServeSpec)
    backend: BackendSpec = Field(default_factory=BackendSpec)
    external: ExternalSpec | None = None
    compose: ComposeSpec | None = None
    torchserve_replicas: int = Field(1, ge=1, le=16)
    prometheus: PrometheusSpec = Field(default_factory=PrometheusSpec)

    @field_validator("torchserve_replicas")
    @classmethod
    def _replicas_need_token_auth_off(cls, replicas: int, info: ValidationInfo) -> int:
        # The one place of this rule: a scenario file (at the field, with file:line), a sweep
        # point, make_stack's mapping and a StackSpec built in code all pass here, so no
        # driver can be handed a stack that would refuse to start. Each TorchServe replica
        # mints its own keys and the backend holds one. Replicas run on the compose stack,
        # and on the local one only with use_torchserve; an external stack starts none.
        # (Fields validate in order: driver, use_torchserve and torchserve come before.)
        driver = info.data.get("driver", "local")
        runs = driver == "compose" or (driver == "local" and info.data.get("use_torchserve"))
        torchserve = info.data.get("torchserve")
        token_auth = torchserve is not None and torchserve.token_auth
        if runs and replicas > 1 and token_auth:
            raise ValueError(
                f"{replicas} replicas need stack.torchserve.token_auth: false "
                "(each replica would generate its own keys; the backend holds one)"
            )
        return replicas

    @model_validator(mode="after")
    def _driver_section(self) -> StackSpec:
        if self.driver == "external" and self.external is None:
            raise ValueError("driver 'external' needs an 'external' section (ws_url, http_url)")
        if self.driver == "compose" and self.compose is None:
            self.compose = ComposeSpec()  # the repository's compose file, all defaults
        if self.prometheus.enabled and self.driver == "external":
            raise ValueError(
                "prometheus.enabled: the harness starts a Prometheus server with the local and "
                "compose stacks only; for an external system point your own Prometheus at its "
                "metrics with monitoring/rules loaded (harness judge --prometheus reads it)"
            )
        return self


class SyntheticTrace(_Strict):
    """Seeded synthetic landmark stream (backend_patch.app.ml.synthetic)."""

    seed: int = Field(0, ge=0, le=2**32 - 1)
    signs: int = Field(20, ge=1, le=100_000)
    sign_mix: list[str] | None = None
    # The backend ends a sign after 10 rest frames: shorter rests would merge two signs.
    # The one set of trace defaults: `harness synth` builds this model too.
    rest_frames: tuple[int, int] = (15, 30)

    @model_validator(mode="after")
    def _rest_order(self) -> SyntheticTrace:
        lo, hi = self.rest_frames
        if lo < 0 or hi < lo or hi > 10_000:
            raise ValueError(
                f"rest_frames must be [lo, hi] with 0 <= lo <= hi <= 10000, got [{lo}, {hi}]"
            )
        return self


class TraceSpec(_Strict):
    """Exactly one of ``synthetic`` or ``file`` (JSONL, relative to the scenario file)."""

    synthetic: SyntheticTrace | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TraceSpec:
        if (self.synthetic is None) == (self.file is None):
            raise ValueError("give exactly one of 'synthetic' or 'file'")
        return self


class LocustBind(_Strict):
    """Where the Locust master listens for workers (ZeroMQ). Port 0: a free port, passed to
    the local workers; remote workers need a fixed port open to them."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)


class LocustSpec(_Strict):
    """``workload.engine: locust``: the load split over Locust workers (README "More load than
    one machine"). ``workers`` local worker processes (None: cores - 1, at least 1) plus
    ``expect_remote_workers`` started elsewhere with ``harness worker --master HOST:PORT``."""

    workers: int | None = Field(None, ge=0, le=256)
    expect_remote_workers: int = Field(0, ge=0, le=1024)
    master_bind: LocustBind = Field(default_factory=LocustBind)
    worker_timeout_s: float = Field(30, gt=0, le=MAX_TIMEOUT_S)
    web: bool = False
    web_bind: LocustBind = Field(default_factory=LocustBind)

    def local_workers(self) -> int:
        """Local worker processes to start: ``workers``, or cores - 1 (at least 1)."""
        if self.workers is not None:
            return self.workers
        return max((os.cpu_count() or 2) - 1, 1)

    def total_workers(self) -> int:
        """Local plus remote workers."""
        return self.local_workers() + self.expect_remote_workers


class Stage(_Strict):
    """One k6-style stage: move linearly to ``target`` over ``duration_s`` (then hold by
    repeating the target in the next stage). Target: sessions (``workload.stages``) or
    sessions per second (``arrivals.stages``)."""

    duration_s: float = Field(..., gt=0, le=MAX_DURATION_S)
    target: float = Field(..., ge=0, le=10_000)


class SessionLength(_Strict):
    """How long an arriving session streams: ``fixed`` (``seconds``), ``exponential`` (mean
    ``seconds``), or ``trace`` (its trace once, start to end)."""

    distribution: Literal["fixed", "exponential", "trace"] = "fixed"
    seconds: float | None = Field(None, gt=0, le=MAX_DURATION_S)

    @model_validator(mode="after")
    def _seconds(self) -> SessionLength:
        if self.distribution != "trace" and self.seconds is None:
            raise ValueError(f"session_length {self.distribution!r} needs 'seconds'")
        if self.distribution == "trace" and self.seconds is not None:
            raise ValueError("session_length 'trace' takes no 'seconds' (the trace's length is)")
        return self


class Arrivals(_Strict):
    """Open model: sessions arrive at ``rate_per_s`` (or per ``stages``), each streams for its
    ``session_length`` and leaves. ``process``: ``poisson`` (exponential gaps) or ``constant``
    (evenly spaced). ``seed`` makes the arrival times and lengths repeatable."""

    rate_per_s: float | None = Field(None, gt=0, le=10_000)
    stages: list[Stage] | None = Field(None, min_length=1, max_length=1000)
    process: Literal["poisson", "constant"] = "poisson"
    session_length: SessionLength
    seed: int = Field(0, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _one_rate(self) -> Arrivals:
        if (self.rate_per_s is None) == (self.stages is None):
            raise ValueError("give exactly one of 'rate_per_s' or 'stages'")
        return self


class Workload(_Strict):
    """The load: ``duration_s`` is the whole load, of which the first ``warmup_s`` is excluded.

    The traffic model is exactly one of ``sessions`` (closed: N sessions for the whole run, the
    default), ``stages`` (closed: a target number of sessions over time) or ``arrivals`` (open:
    sessions come and go)."""

    sessions: int | None = Field(None, ge=1, le=10_000)
    stages: list[Stage] | None = Field(None, min_length=1, max_length=1000)
    arrivals: Arrivals | None = None
    fps: float = Field(30, gt=0, le=1000)
    duration_s: float = Field(..., gt=0, le=MAX_DURATION_S)
    warmup_s: float = Field(0, ge=0, le=MAX_DURATION_S)
    ramp_up_s: float = Field(0, ge=0, le=MAX_DURATION_S)
    trace: TraceSpec = Field(default_factory=lambda: TraceSpec(synthetic=SyntheticTrace()))
    late_threshold_ms: float = Field(5, gt=0, le=MAX_TIMEOUT_S * 1000)
    reply_timeout_s: float = Field(5, gt=0, le=MAX_TIMEOUT_S)
    engine: Literal["native", "locust"] = "native"
    locust: LocustSpec | None = None

    @model_validator(mode="after")
    def _engine(self) -> Workload:
        if self.engine == "native":
            if self.locust is not None:
                raise ValueError("workload.locust applies to engine: locust (engine is native)")
            return self
        if self.sessions is None:
            raise ValueError(
                "engine locust runs the fixed 'sessions' model only; arrivals and stages need"
                " engine: native"
            )
        if self.locust is None:
            self.locust = LocustSpec()
        n = self.locust.total_workers()
        if n < 1:
            raise ValueError("engine locust needs at least one worker (workers + remote)")
        if n > self.sessions:
            raise ValueError(
                f"{n} locust workers for {self.sessions} sessions: give each a session"
            )
        return self

    @model_validator(mode="after")
    def _warmup_inside(self) -> Workload:
        if self.warmup_s >= self.duration_s:
            raise ValueError(
                f"warmup_s ({self.warmup_s}) must be shorter than duration_s ({self.duration_s}):"
                " nothing would be measured"
            )
        given = [k for k in ("sessions", "stages", "arrivals") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one traffic model: 'sessions' (fixed N), 'stages' (target "
                f"sessions over time) or 'arrivals' (sessions come and go); got {given or 'none'}"
            )
        if self.ramp_up_s and self.sessions is None:
            raise ValueError("ramp_up_s applies to 'sessions' only (stages ramp on their own)")
        return self

    @property
    def open_model(self) -> bool:
        """True when sessions come and go during the run (stages or arrivals)."""
        return self.sessions is None


Action = Literal["kill_torchserve", "start_torchserve", "reload_model", "set_rollout"]


class Event(_Strict):
    """One timeline event at ``at_s`` seconds on the run clock (t=0 at load start)."""

    at_s: float = Field(..., ge=0, le=MAX_DURATION_S)
    action: Action
    version: str | None = None
    percent: int | None = Field(None, ge=0, le=100)

    @model_validator(mode="after")
    def _params(self) -> Event:
        if self.action == "reload_model" and not self.version:
            raise ValueError("reload_model needs 'version'")
        if self.action == "set_rollout" and self.percent is None:
            raise ValueError("set_rollout needs 'percent' (0..100)")
        if self.action != "reload_model" and self.version is not None:
            raise ValueError(f"'version' only applies to reload_model, not {self.action}")
        if self.action != "set_rollout" and self.percent is not None:
            raise ValueError(f"'percent' only applies to set_rollout, not {self.action}")
        return self

    def params(self) -> dict[str, object]:
        """The action's parameters (for results ``events[].params``)."""
        if self.action == "reload_model":
            return {"version": self.version}
        if self.action == "set_rollout":
            return {"percent": self.percent}
        return {}


class BaselineSpec(_Strict):
    """A results file to compare with, or a scenario to run first. Paths relative to the file."""

    results: str | None = None
    scenario: str | None = None
    # KEY=VALUE overrides the baseline scenario runs with: the loader adds the workload/stack
    # overrides given to this scenario (--set, --sessions...), so a Scenario object carries them
    # wherever it goes (harness.run, run_repeated) and both runs measure one workload.
    overrides: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _exactly_one(self) -> BaselineSpec:
        if (self.results is None) == (self.scenario is None):
            raise ValueError("give exactly one of 'results' or 'scenario'")
        if self.overrides and self.scenario is None:
            raise ValueError("'overrides' applies to a baseline 'scenario' (a run), not 'results'")
        return self


# The latency figures a rollout step may judge (cohort against cohort).
JudgedLatency = Literal["frame.p50", "frame.p95", "frame.p99", "inference.p50", "inference.p99"]


class RolloutJudge(_Strict):
    """What a rollout step's judgement compares, TorchServe cohort against old-pipeline cohort,
    judged sequentially (every ``look_every_s``, anytime-valid: harness/analysis/sequential.py).

    Latency (``frame.p95``-style names) FAILS when the TorchServe cohort's percentile is, with
    confidence, above the old cohort's by more than ``latency_allowance_ms`` and
    ``latency_allowance_ratio`` of it (an HTTP hop costs a few ms by design), and PASSES when it
    is, with confidence, within that allowance. Errors: the TorchServe cohort's error share may
    exceed the old one's by ``max_error_share_increase``; at most ``max_fallback_share`` of its
    classifications may be answered locally (from ``min_inferences``). Accuracy: may fall short
    of the old one's by ``max_accuracy_drop`` (from ``min_judged_signs`` classified signs per
    cohort). ``alpha``: the chance that a step of a healthy TorchServe is aborted (or a
    criterion wrongly passed), however often it is looked at (split over the criteria)."""

    latency: list[JudgedLatency] = Field(
        default_factory=lambda: list[JudgedLatency](["frame.p95", "inference.p50"])
    )
    latency_allowance_ms: float = Field(25.0, ge=0, le=MAX_TIMEOUT_S * 1000)
    latency_allowance_ratio: float = Field(0.25, ge=0, le=100)
    max_error_share_increase: float = Field(0.01, ge=0, le=1)
    # TorchServe cohort classifications answered by the local engine (fallback or hedge won).
    max_fallback_share: float = Field(0.2, ge=0, le=1)
    min_inferences: int = Field(5, ge=1, le=1_000_000)
    max_accuracy_drop: float = Field(0.05, ge=0, le=1)
    min_judged_signs: int = Field(10, ge=1, le=1_000_000)
    min_sessions: int = Field(2, ge=1, le=10_000)
    alpha: float = Field(0.01, ge=1e-6, le=0.2)
    # Where the cohorts' observations come from: the harness's own frames (client side), or
    # the stack's Prometheus (stack.prometheus.enabled): the backend's histogram buckets, read
    # as ``harness judge --prometheus`` reads a production one (server side, bucket
    # resolution, no accuracy).
    source: Literal["harness", "prometheus"] = "harness"


class RolloutSpec(_Strict):
    """A progressive rollout judged while the run goes: at ``start_s`` the share of NEW sessions
    sent to TorchServe becomes ``steps[0]`` %. Each step is judged every ``look_every_s``
    (the first ``settle_s`` after the change left out) and decided as soon as the evidence
    suffices: ADVANCE (every latency criterion passed), ABORT (a criterion failed: rollout set
    to 0) or, when its evidence budget of ``hold_s`` x (1 + ``max_holds``) seconds runs out with
    nothing failed, INCONCLUSIVE: the rollout stops there and keeps the share
    (``on_inconclusive: hold``) or returns to 0 (``rollback``)."""

    steps: list[int] = Field(..., min_length=1, max_length=100)
    hold_s: float = Field(..., gt=0, le=MAX_DURATION_S)
    start_s: float = Field(0.0, ge=0, le=MAX_DURATION_S)
    settle_s: float = Field(1.0, ge=0, le=MAX_DURATION_S)
    max_holds: int = Field(1, ge=0, le=100)
    look_every_s: float = Field(1.0, gt=0, le=MAX_DURATION_S)
    on_inconclusive: Literal["hold", "rollback"] = "hold"
    judge: RolloutJudge = Field(default_factory=RolloutJudge)

    @property
    def budget_s(self) -> float:
        """Longest a step is judged before it is called inconclusive (s)."""
        return self.hold_s * (1 + self.max_holds)

    @model_validator(mode="after")
    def _steps(self) -> RolloutSpec:
        if any(not 0 < p <= 100 for p in self.steps):
            raise ValueError(f"rollout steps are percents in 1..100, got {self.steps}")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError(f"rollout steps must rise, got {self.steps}")
        if self.settle_s >= self.hold_s:
            raise ValueError(f"settle_s ({self.settle_s}) must be shorter than hold_s")
        return self


class AbortSpec(_Strict):
    """k6's abortOnFail: ``gates`` checked every ``check_every_s`` while the run goes, once
    ``min_measured_s`` past the warm-up are measured; the first one lost stops the run, and the
    results measured so far are kept and judged."""

    gates: list[GateField] = Field(..., min_length=1)  # parsed once, like Scenario.gates
    min_measured_s: float = Field(5.0, ge=0, le=MAX_DURATION_S)
    check_every_s: float = Field(2.0, gt=0, le=MAX_DURATION_S)


class LiveSpec(_Strict):
    """Live outputs while the run goes; the final results are unchanged. ``file``: per-second
    figures (JSON lines or CSV by ``format``; ``-`` is stdout; relative to the run folder).
    ``prometheus_port``: serve the harness's live figures on ``prometheus_host`` (loopback by
    default; 0 = any free port, printed)."""

    file: str | None = None
    format: Literal["jsonl", "csv"] = "jsonl"
    prometheus_port: int | None = Field(None, ge=0, le=65535)
    prometheus_host: str = "127.0.0.1"


class ReportSpec(_Strict):
    """HTML report settings."""

    enabled: bool = True


class Scenario(_Strict):
    """A validated scenario, every default filled in; paths made absolute by the loader."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    stack: StackSpec = Field(default_factory=StackSpec)
    workload: Workload
    timeline: list[Event] = Field(default_factory=list)
    gates: list[GateField] = Field(default_factory=list)  # parsed once, here
    baseline: BaselineSpec | None = None
    report: ReportSpec = Field(default_factory=ReportSpec)
    rollout: RolloutSpec | None = None
    abort_on_fail: AbortSpec | None = None
    live: LiveSpec = Field(default_factory=LiveSpec)
