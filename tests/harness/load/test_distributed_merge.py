"""Distributed load, the parts that need no process: plan split, wire format, the merge, engine
selection in the scenario, the worker's address. This module (and pytest's process) must
never import locust: it monkeypatches the whole process."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from pydantic import ValidationError

from harness.analysis import frames as fr
from harness.load.distributed import (
    WORKER_LOST,
    WorkerOutcome,
    merge_worker_results,
    worker_command,
)
from harness.load.distributed.messages import RunPlan, result_from_wire, result_to_wire
from harness.load.recording import FRAME_DTYPE, LoadResult
from harness.load.selfcheck import FELL_BEHIND
from harness.results.model import InvalidReason
from harness.scenario.models import Workload

FPS = 10.0
COMMON = dict(fps=FPS, duration_s=4.0, warmup_s=1.0, ramp_up_s=0.0, start_s=1.0,
              late_threshold_ms=5.0, reply_timeout_s=5.0)  # fmt: skip


def _worker_result(sessions: int, labels: list[str], served: list[int], late: int = 0,
                   reasons: list[InvalidReason] | None = None) -> LoadResult:  # fmt: skip
    """A worker's own result: sessions 0..n-1, 10 frames each, its own label codes."""
    rows = np.zeros(sessions * 10, dtype=FRAME_DTYPE)
    rows["session"] = np.repeat(np.arange(sessions), 10)
    rows["frame_idx"] = np.tile(np.arange(10), sessions)
    rows["t_scheduled"] = 1.0 + rows["frame_idx"] / FPS
    rows["t_sent"] = rows["t_scheduled"]
    rows["t_sent"][:late] += 0.050
    rows["t_reply"] = rows["t_sent"] + 0.020
    for name in ("model_version", "prediction", "truth", "error_code"):
        rows[name] = -1
    rows["served_by"] = np.resize(np.array(served, dtype=np.int16), rows.size)
    return LoadResult(frames=rows, labels=labels, fps=FPS, duration_s=4.0, warmup_s=1.0,
                      late_threshold_ms=5.0, disconnects=1, send_failures=0,
                      generator_late_share=0.0, generator_cpu_percent=10.0,
                      generator_cpu_saturated=False, invalid_reasons=reasons or [])  # fmt: skip


def _outcome(index: int, offset: int, sessions: int, result: LoadResult | None,
             status: str = "done") -> WorkerOutcome:  # fmt: skip
    return WorkerOutcome(index=index, name=f"{index} (h{index} pid 1)", session_offset=offset,
                         sessions=sessions, status=status, result=result)  # type: ignore[arg-type]  # fmt: skip


def test_merge_is_the_concatenation_renumbered_and_relabelled() -> None:
    a = _worker_result(2, ["local", "torchserve"], [0, 1, -1])
    b = _worker_result(3, ["torchserve", "x", "local"], [2, 0, 1])
    merged = merge_worker_results(
        [_outcome(1, 2, 3, b), _outcome(0, 0, 2, a)], total_sessions=5, **COMMON
    )
    assert merged.labels == ["local", "torchserve", "x"]
    # Worker order, sessions renumbered to the one-process numbering 0..4.
    assert merged.frames["session"].tolist() == [*np.repeat(np.arange(5), 10).tolist()]
    # Every row equals the worker's row except session and label codes; labels decode the same.
    decoded = [r.served_by for r in merged.records()]
    expected = [r.served_by for r in a.records()] + [r.served_by for r in b.records()]
    assert decoded == expected
    for f in ("frame_idx", "t_scheduled", "t_sent", "t_reply"):
        np.testing.assert_array_equal(merged.frames[f], np.concatenate([a.frames[f], b.frames[f]]))
    assert merged.disconnects == 2
    assert merged.valid
    ws = merged.distribution["workers"]
    assert [w["sessions"] for w in ws] == [2, 3] and [w["frames"] for w in ws] == [20, 30]


def test_a_late_worker_and_a_lost_worker_make_the_run_invalid_naming_them() -> None:
    fell = InvalidReason(kind=FELL_BEHIND, message="generator fell behind: 25.0% of frames")
    behind = _worker_result(2, [], [-1], late=5, reasons=[fell])
    merged = merge_worker_results(
        [_outcome(0, 0, 2, behind), _outcome(1, 2, 2, None, status="exited")],
        total_sessions=4,
        **COMMON,
    )
    reasons = merged.invalid_reasons
    assert reasons[0].kind == FELL_BEHIND
    assert str(reasons[0]) == "generator fell behind on worker 0 (h0 pid 1): 25.0% of frames"
    assert reasons[1].kind == WORKER_LOST
    assert str(reasons[1]).startswith("load worker lost: worker 1 (h1 pid 1) exited")
    # The lost worker's planned frames are in the result, never sent: counted lost.
    lost = merged.frames[merged.frames["session"] >= 2]
    assert lost.size == 2 * 30 and np.isnan(lost["t_sent"]).all()
    assert fr.counts(merged)["lost"] == 2 * 30  # all scheduled after the 1 s warm-up
    assert merged.generator_late_share == pytest.approx(5 / 20)


def test_plan_split_gives_every_session_once() -> None:
    plan = RunPlan(ws_url="ws://x", total_sessions=7, trace={}, workers=3, worker_timeout_s=1,
                   results_dir="/tmp", **{k: v for k, v in COMMON.items()})  # fmt: skip
    parts = plan.split()
    assert [(p.session_offset, p.sessions) for p in parts] == [(0, 3), (3, 2), (5, 2)]
    assert all(p.total_sessions == 7 for p in parts)


def test_wire_round_trip_keeps_every_row_and_field() -> None:
    r = _worker_result(2, ["local"], [0, -1])
    back = result_from_wire(*result_to_wire(r))
    np.testing.assert_array_equal(back.frames, r.frames)
    assert back.labels == r.labels and back.disconnects == 1
    with pytest.raises(ValueError, match="multiple of"):
        result_from_wire({}, [], b"123")


def test_engine_selection_and_validation_errors() -> None:
    assert Workload(sessions=2, duration_s=5).engine == "native"
    w = Workload(sessions=4, duration_s=5, engine="locust", locust={"workers": 2})
    assert w.locust is not None and w.locust.total_workers() == 2
    assert w.locust.master_bind.host == "127.0.0.1" and w.locust.master_bind.port == 0
    assert Workload(sessions=4, duration_s=5, engine="locust").locust.local_workers() >= 1  # type: ignore[union-attr]
    bad = [
        ({"engine": "locust", "locust": {"workers": 5}}, "5 locust workers for 4 sessions"),
        ({"locust": {"workers": 1}}, "workload.locust applies to engine: locust"),
        ({"engine": "gevent"}, "engine"),
        ({"engine": "locust", "locust": {"workers": 0}}, "at least one worker"),
        ({"engine": "locust", "locust": {"wokers": 1}}, "wokers"),
        ({"engine": "locust", "locust": {"master_bind": {"port": 70000}}}, "port"),
    ]
    for extra, message in bad:
        with pytest.raises(ValidationError, match=message):
            Workload(sessions=4, duration_s=5, **extra)


def test_worker_address() -> None:
    argv = worker_command("10.0.0.5:6000")
    assert argv[argv.index("--master-host") + 1] == "10.0.0.5"
    assert argv[argv.index("--master-port") + 1] == "6000"
    assert "--worker" in argv
    assert worker_command("master.lan")[-3] == "5557"
    for bad in ("host:notaport", ":5557", "h:70000"):
        with pytest.raises(ValueError, match="HOST"):
            worker_command(bad)


def _master(argv: list[str]) -> tuple[str, str]:
    return argv[argv.index("--master-host") + 1], argv[argv.index("--master-port") + 1]


def test_worker_address_ipv6() -> None:
    # A bare IPv6 address is a host (it used to become host ":" and port "1").
    assert _master(worker_command("::1")) == ("::1", "5557")
    assert _master(worker_command("fd00::5")) == ("fd00::5", "5557")
    assert _master(worker_command("[::1]:6000")) == ("::1", "6000")
    assert _master(worker_command("[fd00::5]")) == ("fd00::5", "5557")
    with pytest.raises(ValueError, match=r"\[ADDR\]:PORT"):
        worker_command("fd00::5::zz:6000")


def test_this_process_never_imported_locust() -> None:
    assert "locust" not in sys.modules and "gevent" not in sys.modules


def test_loadgen_compose_file_scales_workers_at_the_harness_master() -> None:
    """docker-compose.loadgen.yml: one scalable service (no fixed name or published port, so
    ``--scale loadgen=N`` works) whose default command is a valid ``harness worker`` address."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[3]
    doc = yaml.safe_load((root / "docker-compose.loadgen.yml").read_text())
    (name, svc), *_ = doc["services"].items()
    assert name == "loadgen" and len(doc["services"]) == 1
    assert "container_name" not in svc and "ports" not in svc
    assert svc["build"]["dockerfile"] == "docker/loadgen/Dockerfile"
    assert (root / svc["build"]["dockerfile"]).is_file()
    flag, address = svc["command"]
    assert flag == "--master"
    default = address.split(":-", 1)[1].rstrip("}")  # ${HARNESS_MASTER:-host:port}
    assert worker_command(default)[-3] == "5557"
    dockerfile = (root / "docker/loadgen/Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "harness", "worker"]' in dockerfile
