"""docker-compose.loadgen.yml: containerised Locust workers (``--scale loadgen=2``), each in its
own network namespace, against a master started by ``harness run`` on this host (issue 13).

The image is built on the local base (docker/build-local-base.sh), as CI must. The master and
the target (a tiny real backend) listen on the Docker bridge's gateway, the address the
containers know as host.docker.internal, not on every interface.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.stack.compose import detect_compose_cli
from harness.stack.procs import STATE_DIR_ENV, free_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.loadgen.yml"
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]

SESSIONS, SECONDS, WARMUP = 4, 5, 1


def _compose(project: str, *args: str, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(
        [*detect_compose_cli(), "-f", str(COMPOSE_FILE), "-p", project, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"compose {args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_two_containerised_workers_run_a_master_started_by_harness_run(
    docker_engine, tmp_path: Path
) -> None:
    ipam = docker_engine.networks.get("bridge").attrs["IPAM"]["Config"][0]
    # Some engines (docker.io 20.10 here, at times) list the subnet only: the bridge's gateway
    # is then its subnet's first address, the address docker0 holds on the host.
    gateway = ipam.get("Gateway") or str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))
    port = free_port(gateway)
    project = f"signflow-loadgen-{os.getpid()}"
    env = {
        **os.environ,
        "LOADGEN_BASE_IMAGE": "signflow/python-base:local",
        "HARNESS_MASTER": f"host.docker.internal:{port}",
    }
    # Built before the run: a master waits worker_timeout_s for its workers, not for a build.
    _compose(project, "build", "-q", env=env)
    backend = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "harness" / "fake_backend.py"), gateway],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    run = None
    try:
        assert backend.stdout is not None
        bport = int(backend.stdout.readline())
        scenario = tmp_path / "loadgen.yaml"
        scenario.write_text(
            "name: loadgen\nstack:\n  driver: external\n  external:\n"
            f"    ws_url: ws://{gateway}:{bport}/\n    http_url: http://{gateway}:{bport}\n"
            f"workload:\n  sessions: {SESSIONS}\n  duration_s: {SECONDS}\n"
            f"  warmup_s: {WARMUP}\n  late_threshold_ms: 25\n  engine: locust\n"
            "  locust: {workers: 0, expect_remote_workers: 2, worker_timeout_s: 60,\n"
            f"           master_bind: {{host: '{gateway}', port: {port}}}}}\n"
            "report: {enabled: false}\n"
        )
        run = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", str(scenario), "--out", str(tmp_path / "o")],
            cwd=REPO, env={**os.environ, STATE_DIR_ENV: str(tmp_path / "state")},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        _compose(project, "up", "-d", "--no-build", "--scale", "loadgen=2", env=env)
        out, _ = run.communicate(timeout=180)
        # The master's quit ends the workers: their containers exit by themselves.
        label = f"com.docker.compose.project={project}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            containers = docker_engine.containers.list(all=True, filters={"label": label})
            if containers and all(c.status == "exited" for c in containers):
                break
            time.sleep(0.5)
        logs = _compose(project, "logs", "--no-color", env=env)
        hostnames = {c.attrs["Config"]["Hostname"] for c in containers}
        states = [(c.name, c.status, c.attrs["State"]["ExitCode"]) for c in containers]
    finally:
        if run is not None and run.poll() is None:
            run.kill()
            run.wait()
        backend.terminate()
        backend.wait(10)
        compose = [*detect_compose_cli(), "-f", str(COMPOSE_FILE), "-p", project]
        subprocess.run([*compose, "down", "-v", "-t", "5"], cwd=REPO, env=env,
                       capture_output=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode in (0, 2), out + logs  # 2: a busy 2-core host made a worker late
    doc = json.loads((tmp_path / "o" / "latest" / "results.json").read_text())
    if run.returncode == 2:
        assert all("on worker" in r["message"] for r in doc["invalid_reasons"]), out
    workers = doc["load"]["workers"]
    assert [w["status"] for w in workers] == ["done", "done"], out + logs
    # Each worker ran in its own container (its own network namespace), not on this host.
    assert {w["host"] for w in workers} == hostnames, (workers, hostnames)
    assert socket.gethostname() not in hostnames
    s = doc["summary"]
    assert s["frames"]["scheduled"] == SESSIONS * (SECONDS - WARMUP) * 30
    assert s["frames"]["lost"] == 0 and s["errors"]["total"] == 0
    assert sorted(w["frames"] for w in workers) == [s["frames"]["scheduled"] // 2] * 2
    assert [st for st in states if st[1:] != ("exited", 0)] == [], (states, logs)
    label = f"com.docker.compose.project={project}"
    assert docker_engine.containers.list(all=True, filters={"label": label}) == []
