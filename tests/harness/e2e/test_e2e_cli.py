"""End to end on the local stack, through the real CLI: `python -m harness run ...`.

Every run starts a real backend (and TorchServe where the scenario says so), streams real
WebSocket sessions, and writes results.json + junit.xml. Durations are shortened with --set so
the whole file stays within a few minutes on 2 cores; the shipped scenario files themselves are
what runs, so a broken scenario breaks these tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.load.selfcheck import FELL_BEHIND
from harness.stack.local import PIDS_FILE, REPO_ROOT, surviving_processes

SCENARIOS = REPO_ROOT / "scenarios"
RUN_TIMEOUT_S = 300

pytestmark = [
    pytest.mark.slow,
    # TorchServe starts in ~5 s on an idle 2-core box but took 35-77 s while other suites ran.
    pytest.mark.timeout(420),
    pytest.mark.skipif(
        not (REPO_ROOT / "build" / "model-store" / "signflow-2.0.mar").is_file(),
        reason="models/archives not built (make setup)",
    ),
]

# Short but still meaningful: a few signs per session after the warm-up. The warm-up is what
# keeps start-up transients (connections, first inferences, a busy shared CPU) out of the
# figures and out of the generator's lateness self-check.
SHORT = ["workload.duration_s=12", "workload.warmup_s=4", "workload.ramp_up_s=1"]


# These tests check what the stack DOES (fallback, recovery, reload, exit codes, cleanup), not the
# generator's timing precision (tests/harness/load measures that against known delays). On a
# shared 2-core CI machine the default 5 ms lateness limit can flag a run INVALID because the
# test process, TorchServe and the backend all compete with the generator, so these runs judge
# lateness at 25 ms: still INVALID if the generator truly stalls.
E2E_SETS = ["workload.late_threshold_ms=25"]


def _harness(scenario: str, out: Path, *sets: str) -> list[str]:
    argv = [sys.executable, "-m", "harness", "run", str(SCENARIOS / scenario), "--out", str(out)]
    for item in (*E2E_SETS, *sets):
        argv += ["--set", item]
    return argv


def _run_once(scenario: str, out: Path, *sets: str) -> tuple[int, str]:
    proc = subprocess.Popen(
        _harness(scenario, out, *sets),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # Ctrl-C, not SIGKILL: the harness must still tear its stack down.
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        pytest.fail(f"harness run {scenario} took over {RUN_TIMEOUT_S} s\n{output[-3000:]}")
    return proc.returncode, output


# A spoilt attempt is kept (for the record) under a folder that _results skips.
SPOILT_PREFIX = ".spoilt-attempt-"


def _spoilt_by_the_machine(code: int, out: Path) -> bool:
    """True when the run is INVALID only because the generator fell behind its schedule.

    That verdict is the harness working as designed on a busy shared machine (a clean-clone
    check saw 1.5 % of frames > 25 ms late while two TorchServe replicas loaded a model), not
    a behaviour of the stack these tests check, so such an attempt is run again, once.
    """
    if code != 2:
        return False
    docs = [json.loads(p.read_text()) for p in out.rglob("results.json") if not _spoilt(p, out)]
    reasons = [r for d in docs for r in d.get("invalid_reasons") or []]
    return bool(reasons) and all(r["kind"] == FELL_BEHIND for r in reasons)


def _spoilt(path: Path, out: Path) -> bool:
    return any(part.startswith(SPOILT_PREFIX) for part in path.relative_to(out).parts)


def _run(scenario: str, out: Path, *sets: str, attempts: int = 2) -> tuple[int, str]:
    """Run the harness CLI; an attempt spoilt by a busy machine is retried (see above)."""
    for attempt in range(1, attempts):
        code, output = _run_once(scenario, out, *sets)
        if not _spoilt_by_the_machine(code, out):
            return code, output
        keep = out / f"{SPOILT_PREFIX}{attempt}"
        keep.mkdir()
        for entry in list(out.iterdir()):
            if not entry.name.startswith(SPOILT_PREFIX):
                entry.rename(keep / entry.name)
        print(f"attempt {attempt} of {scenario} spoilt by a busy machine; kept in {keep}")
    return _run_once(scenario, out, *sets)


def _results(out: Path, name: str) -> tuple[dict[str, Any], Path]:
    """The results.json of the run named ``name`` somewhere under ``out``."""
    for path in sorted(out.rglob("results.json")):
        if _spoilt(path, out):
            continue
        doc = json.loads(path.read_text())
        if doc.get("name") == name:
            return doc, path.parent
    raise AssertionError(f"no results.json for {name!r} under {out}")


def _no_leftovers(run_dir: Path) -> None:
    records = list(run_dir.rglob(PIDS_FILE))
    assert records, f"no {PIDS_FILE} under {run_dir}"
    for record in records:
        assert surviving_processes(record) == [], f"processes left behind ({record})"


def _faults(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [f for f in doc["faults"] if f["kind"] == kind]


def test_baseline_run_with_a_failing_gate_exits_1_and_junit_says_so(tmp_path: Path) -> None:
    impossible = "frame.latency_ms.p50 < 0.001"
    gates = json.dumps(["errors.total == 0", "accuracy >= 0.9", impossible])
    code, output = _run("baseline.yaml", tmp_path, *SHORT, "workload.sessions=4", f"gates={gates}")
    assert code == 1, output[-3000:]
    doc, run_dir = _results(tmp_path, "baseline")
    assert doc["valid"] is True and doc["verdict"] == "failed"
    summary = doc["summary"]
    assert summary["errors"]["total"] == 0
    assert summary["served_by"]["torchserve"] in (0, 0.0, None)
    assert summary["served_by"]["local"] > 0.99
    for key in ("p50", "p95", "p99", "p999"):
        assert summary["frame"]["latency_ms"][key] > 0
    verdicts = {g["expr"]: g["passed"] for g in doc["gates"]}
    assert verdicts == {"errors.total == 0": True, "accuracy >= 0.9": True, impossible: False}

    suite = ET.parse(run_dir / "junit.xml").getroot()
    cases = suite.iter("testcase")
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert len(failed) == 1 and impossible in failed[0]
    _no_leftovers(run_dir)


def test_torchserve_run_serves_through_torchserve_and_gates_the_comparison(
    tmp_path: Path,
) -> None:
    """torchserve.yaml runs baseline.yaml first and gates the comparison (issue 18 item 4):
    every gate on what the stack must do passes; the ``compare.`` gates carry the comparison's
    verdicts, and on a CPU host latency is where the run may honestly FAIL (1)."""
    code, output = _run("torchserve.yaml", tmp_path, *SHORT)
    doc, run_dir = _results(tmp_path, "torchserve")
    base, _ = _results(tmp_path, "baseline")
    summary = doc["summary"]
    assert summary["errors"]["total"] == 0, output[-3000:]
    assert summary["served_by"]["torchserve"] > 0.95
    assert summary["fallback"]["share"] is not None and summary["fallback"]["share"] <= 0.05
    assert base["summary"]["fallback"]["share"] == 0.0  # the old pipeline is not a fallback
    assert summary["inference"]["latency_ms"]["p99"] is not None
    assert summary["accuracy"] >= 0.9
    assert doc["provenance"]["model_archives"], "archive sha256 in provenance"
    assert doc["comparison"]["baseline_run_id"] == base["run_id"]
    compared = [g for g in doc["gates"] if g.get("compared")]
    assert len(compared) >= 4 and all(g["verdict"] for g in compared), compared
    # What the stack must do passes; latency (absolute or compared) is the host's answer: on
    # a shared 2-core CPU TorchServe's hop and batch window may fail it, and that is a verdict.
    failed = [g for g in doc["gates"] if not g["passed"] and "latency" not in g["metric"]]
    assert not failed, f"gates: {failed}\n{output[-3000:]}"
    expected = 1 if any(not g["passed"] for g in doc["gates"]) else 0
    assert code == expected, f"gates: {doc['gates']}\n{output[-3000:]}"
    assert "compared with " + base["run_id"] in output  # the headline beside the verdict
    _no_leftovers(run_dir)


def test_fallback_kill_falls_back_without_errors_and_recovers(tmp_path: Path) -> None:
    timeline = "[{at_s: 6, action: kill_torchserve}, {at_s: 10, action: start_torchserve}]"
    code, output = _run(
        "fallback-kill.yaml",
        tmp_path,
        # Room after start_torchserve for the restart and the backend's breaker to close.
        "workload.duration_s=24",
        "workload.warmup_s=4",
        "workload.sessions=6",
        f"timeline={timeline}",
        "live.file=live.jsonl",
    )
    doc, run_dir = _results(tmp_path, "fallback-kill")
    assert [e["ok"] for e in doc["events"]] == [True, True], doc["events"]
    summary = doc["summary"]
    assert summary["errors"]["error_replies"] == 0, output[-3000:]
    assert summary["errors"]["total"] == 0
    (outage,) = _faults(doc, "outage")
    assert outage["time_to_first_fallback_s"] is not None
    assert outage["time_to_recover_s"] is not None
    assert outage["time_to_recover_after_ready_s"] is not None
    assert outage["errors_during_failover"] == 0
    assert outage["local_share_during_outage"] > 0.9
    # Issue 18 item 3: the live fallback share shows the first fallback on the next tick (its
    # window is the replies of the last second), not seconds later.
    rows = [json.loads(x) for x in (run_dir / "live.jsonl").read_text().splitlines()]
    first = outage["start_s"] + outage["first_fallback_after_kill_s"]
    row = next(r for r in rows if r["t"] >= first)
    assert row["fallback_share"] > 0 and row["t"] - first <= 1.1, (first, rows)
    assert summary["fallback"]["count"] > 0 and summary["fallback"]["share"] > 0
    # The gates on what a user feels (stall, p99s, first fallback <= 0.3 s) are the hedged
    # backend's; the next test proves they fail without it. Every other gate must pass here.
    failed = [g for g in doc["gates"] if not g["passed"] and g["metric"] not in FELT]
    assert code in (0, 1) and not failed, f"gates: {failed}\n{output[-3000:]}"
    _no_leftovers(run_dir)


# The fallback-kill gates that bound what a user waits (issue 10's targets).
FELT = {
    "faults.outage.time_to_first_fallback_s",
    "frame.latency_ms.p99",
    "faults.outage.outage_latency_ms.p99",
    "stall.max_ms",
    "faults.outage.recovery_latency_ms.p99",
}
RECOVERY = {"faults.outage.time_to_recover_s", "faults.outage.time_to_recover_after_ready_s"}


def test_shipped_fallback_kill_gates_fail_without_hedging(tmp_path: Path) -> None:
    """The shipped gates see the stall: with the backend's hedging off, a session waits out the
    deadline when TorchServe dies or comes back, and the run FAILS (exit 1) on those gates."""
    timeline = "[{at_s: 5, action: kill_torchserve}, {at_s: 8, action: start_torchserve}]"
    code, output = _run(
        "fallback-kill.yaml",
        tmp_path,
        "workload.duration_s=20",
        "workload.warmup_s=3",
        "workload.sessions=4",
        f"timeline={timeline}",
        "stack.backend.env.TORCHSERVE_HEDGE_ENABLED='false'",  # a string: env values are text
    )
    doc, run_dir = _results(tmp_path, "fallback-kill")
    assert code == 1 and doc["verdict"] == "failed", f"{doc['gates']}\n{output[-3000:]}"
    failed = {g["metric"]: g["measured"] for g in doc["gates"] if not g["passed"]}
    # Only the gates on what a user feels. On a busy host the restarted TorchServe may not be
    # READY before the run ends (its start took 21 s once with six jobs on two cores): then no
    # recovery is measured (None) and its gates fail too, rightly; a measured one must pass.
    unexpected = {
        m: v for m, v in failed.items() if m not in FELT and not (m in RECOVERY and v is None)
    }
    assert not unexpected, failed
    # The longest wait: a window stuck until the backend's 2 s deadline (or a fresh TorchServe's
    # queue), far beyond the 300 ms bar.
    assert failed.get("stall.max_ms", 0) > 300, failed
    assert doc["summary"]["stall"]["max_ms"] == failed["stall.max_ms"]
    # The live progress told the story: the stack's start-up and each event on a line of its own.
    for line in (
        "[fallback-kill] starting the local stack",
        "[fallback-kill] stack up in",
        "TorchServe killed (took",
        "starting TorchServe",
        "TorchServe READY again",
    ):
        assert line in output, line
    assert " 0 frames/s" not in output  # the first tick has a rate
    _no_leftovers(run_dir)


def test_hot_reload_switches_version_without_errors(tmp_path: Path) -> None:
    code, output = _run(
        "hot-reload.yaml",
        tmp_path,
        "workload.duration_s=16",
        "workload.warmup_s=4",
        "workload.sessions=6",
        "timeline=[{at_s: 6, action: reload_model, version: '2.0'}]",
    )
    doc, run_dir = _results(tmp_path, "hot-reload")
    assert doc["events"][0]["ok"] is True, doc["events"]
    summary = doc["summary"]
    assert summary["errors"]["total"] == 0, output[-3000:]
    assert summary["model_versions"].get("2.0", 0) > 0, summary["model_versions"]
    (reload,) = _faults(doc, "reload")
    assert (reload["from_version"], reload["to_version"]) == ("1.0", "2.0")
    assert reload["time_to_first_new_s"] is not None
    assert reload["errors"] == 0
    # 6 sessions instead of 16 drive fewer than the scenario's 30 inferences/s. The hedges a
    # new worker's start can make the backend win, and the stall they bound, depend on how busy
    # this machine is under the whole suite: scripts/ci_compose.sh holds the scenario to them.
    allowed = {
        "throughput.inferences_per_s",
        "faults.reload.fallbacks",
        "faults.reload.max_stall_ms",
    }
    failed = [g for g in doc["gates"] if not g["passed"] and g["metric"] not in allowed]
    assert code in (0, 1) and not failed, f"gates: {failed}\n{output[-3000:]}"
    _no_leftovers(run_dir)


def test_generator_that_cannot_keep_its_schedule_makes_the_run_invalid(tmp_path: Path) -> None:
    """No generator keeps a 1 us schedule: the run is INVALID (exit 2), never passed or failed,
    and the CLI says what to do about it."""
    code, output = _run_once(
        "baseline.yaml", tmp_path, *SHORT, "workload.sessions=2", "workload.late_threshold_ms=0.001"
    )
    assert code == 2, output[-3000:]
    doc, run_dir = _results(tmp_path, "baseline")
    assert doc["verdict"] == "invalid" and doc["valid"] is False
    assert doc["invalid_reasons"][0]["kind"] == FELL_BEHIND
    assert "INVALID: generator fell behind" in output
    assert "hint: the stack shares this machine's CPUs with the load generator" in output
    _no_leftovers(run_dir)


def _stack_pids_once_loaded(
    out: Path, proc: subprocess.Popen[str], timeout_s: float, settle_s: float = 3.0
) -> Path:
    """Wait until the run recorded a backend and a TorchServe worker, then a bit of load."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "harness exited before it could be interrupted"
        for record in out.rglob(PIDS_FILE):
            # A record being rewritten may be half-read: try again on the next poll.
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads(record.read_text())
                if doc.get("backend") and len(doc.get("torchserve", [])) >= 2:
                    time.sleep(settle_s)  # let the load run: Ctrl-C lands mid-run
                    return record
        time.sleep(0.2)
    raise AssertionError("the stack never came up")


def test_ctrl_c_mid_run_leaves_no_process_behind(tmp_path: Path) -> None:
    interrupt_sets = ["workload.warmup_s=0", "workload.reply_timeout_s=1"]
    proc = subprocess.Popen(
        _harness(
            "torchserve.yaml",
            tmp_path,
            "workload.duration_s=60",
            "workload.sessions=4",
            *interrupt_sets,
            # Alone: torchserve.yaml's baseline run first would only delay the stack to stop.
            "baseline=null",
            "gates=[]",
        ),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        record = _stack_pids_once_loaded(tmp_path, proc, timeout_s=120, settle_s=8)
        harness = psutil.Process(proc.pid)
        children = harness.children(recursive=True)
        os.kill(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output[-3000:]
    assert surviving_processes(record) == []
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"children of the harness still running: {alive}"
    # Nothing measured is lost: the figures up to the interrupt are analysed and reported,
    # and the verdict says the run was cut short.
    doc, run_dir = _results(tmp_path, "torchserve")
    assert doc["verdict"] == "error" and doc["error"] == "interrupted"
    assert doc["valid"] is False
    assert any(
        r["kind"] == "interrupted" and r["message"].startswith("run interrupted: results cover")
        for r in doc["invalid_reasons"]
    )
    summary = doc["summary"]
    assert 0 < summary["duration_s"] < 60
    assert summary["frames"]["answered"] > 0, summary["frames"]
    assert summary["frames"]["lost"] == 0, summary["frames"]
    assert (run_dir / "report.html").is_file()
    # The message says where the partial results are (issue 11 item 19).
    assert f"partial results in {run_dir}/results.json" in output


def test_replicas_on_the_local_stack_share_the_load_and_reload_one_by_one(
    tmp_path: Path,
) -> None:
    """scenarios/replicas.yaml (compose by default) on the local stack: two TorchServe
    processes behind one backend, both serving, metrics summed over both, a rolling reload."""
    code, output = _run(
        "replicas.yaml",
        tmp_path,
        "stack.driver=local",
        "stack.torchserve_replicas=2",
        "workload.duration_s=16",
        "workload.warmup_s=4",
        "workload.sessions=6",
        "timeline=[{at_s: 7, action: reload_model, version: '2.0'}]",
    )
    doc, run_dir = _results(tmp_path, "replicas")
    assert doc["events"][0]["ok"] is True, doc["events"]
    summary = doc["summary"]
    assert summary["errors"]["total"] == 0, output[-3000:]
    assert summary["served_by"]["torchserve"] > 0.95
    assert summary["model_versions"].get("2.0", 0) > 0, summary["model_versions"]
    assert len(doc["events"][0]["result"]["replicas"]) == 2
    ts = doc["summary"]["torchserve"]
    assert ts["replicas"] == 2
    by_replica = ts["requests_by_replica"]
    assert set(by_replica) == {"1", "2"} and min(by_replica.values()) > 0, by_replica
    assert sum(by_replica.values()) == ts["requests"]
    for name in ("torchserve-1", "torchserve-2"):
        assert (run_dir / "logs" / name).is_dir(), f"logs of {name}"
    # Replicas run with token auth off: the backend still reads the served batching through the
    # management API (its hedge floor), as it does with auth on.
    backend_log = (run_dir / "logs" / "backend.stderr.log").read_text()
    assert '"event": "torchserve_batching"' in backend_log, backend_log[-2000:]
    assert code == 0, f"gates: {doc['gates']}\n{output[-3000:]}"
    _no_leftovers(run_dir)


SECRET = "e2e-secret-4b1d9c"
SHELL_SECRET = "shell-secret-77aa01"


def test_scenario_owns_the_backend_and_no_secret_reaches_any_file(tmp_path: Path) -> None:
    """Issue 11 items 12, 15, 16, 17, 19 on one real run of baseline-quick:

    the shell exports REST_FRAMES_TO_END=40 (accuracy fell to 0.5 when the backend inherited it)
    and a TORCHSERVE_TOKEN; the trace is `harness synth`'s default output (its rest gaps used to
    merge signs); a token is set with --set; the run goes to --run-dir.
    """
    trace = tmp_path / "synth.jsonl"
    subprocess.run([sys.executable, "-m", "harness", "synth", "--out", str(trace)],
                   cwd=REPO_ROOT, check=True, capture_output=True, timeout=120)  # fmt: skip
    env = {**os.environ, "REST_FRAMES_TO_END": "40", "TORCHSERVE_TOKEN": SHELL_SECRET}
    for attempt in (1, 2):
        run_dir = tmp_path / f"run-{attempt}"
        argv = [sys.executable, "-m", "harness", "run", str(SCENARIOS / "baseline-quick.yaml"),
                "--run-dir", str(run_dir), "--set", f"workload.trace={{file: {trace}}}",
                "--set", f"stack.backend.env.TORCHSERVE_TOKEN={SECRET}"]  # fmt: skip
        for item in E2E_SETS:
            argv += ["--set", item]
        started = time.monotonic()
        proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S, check=False)  # fmt: skip
        wall_s = time.monotonic() - started
        doc = json.loads((run_dir / "results.json").read_text())
        reasons = doc.get("invalid_reasons") or []
        if not (
            proc.returncode == 2 and reasons and all(r["kind"] == FELL_BEHIND for r in reasons)
        ):
            break
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    # 15: the exported REST_FRAMES_TO_END did not reach the backend, and provenance says so.
    backend = doc["provenance"]["configs"]["backend"]
    assert backend["inherited_dropped"] == {"REST_FRAMES_TO_END": "40", "TORCHSERVE_TOKEN": "***"}
    # 16: the synth trace passes the shipped accuracy gate (every sign judged right).
    assert doc["summary"]["accuracy"] == 1.0, doc["summary"]["accuracy_detail"]
    assert [g["passed"] for g in doc["gates"]] == [True]
    # 12: neither token is in any file of the run nor in what was printed.
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {"results.json", "junit.xml", "report.html"} <= {p.name for p in files}
    assert any(p.suffix == ".log" for p in files)
    for path in files:
        data = path.read_bytes()
        assert SECRET.encode() not in data and SHELL_SECRET.encode() not in data, path
    assert SECRET not in output and SHELL_SECRET not in output
    assert doc["scenario"]["stack"]["backend"]["env"]["TORCHSERVE_TOKEN"] == "***"
    # 17: the printed results path is the --run-dir; 19: JUnit time is the wall time.
    assert f"results: {run_dir}/results.json" in proc.stdout
    junit_time = float(ET.parse(run_dir / "junit.xml").getroot().get("time"))
    assert doc["summary"]["duration_s"] < junit_time < wall_s
