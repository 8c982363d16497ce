"""The compose driver against a real Docker engine: start, fault, reload, and nothing left."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from harness.scenario.models import ComposeSpec, PrometheusSpec, StackSpec, TorchServeSpec
from harness.stack.base import ReloadResult, StackDescription, StackError
from harness.stack.compose import ComposeStack, detect_compose_cli, strip_gpu_reservations
from serving.management import key_expiry

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _spec(prometheus: bool = False, **torchserve: object) -> StackSpec:
    return StackSpec(
        driver="compose",
        use_torchserve=True,
        compose=ComposeSpec(file="docker-compose.yml", overrides=["docker-compose.local.yml"]),
        torchserve=TorchServeSpec.model_validate(
            {
                "model_version": "1.0",
                "workers": 1,
                "batch_size": 16,
                "max_batch_delay_ms": 50,
                "token_auth": True,
                **torchserve,
            }
        ),
        prometheus=PrometheusSpec(enabled=prometheus),
    )


def _project_leftovers(client, project: str) -> list[str]:
    label = f"com.docker.compose.project={project}"
    found = [
        f"container {c.name}" for c in client.containers.list(all=True, filters={"label": label})
    ]
    found += [f"network {n.name}" for n in client.networks.list(filters={"label": label})]
    found += [f"volume {v.name}" for v in client.volumes.list(filters={"label": label})]
    return found


def test_strip_gpu_reservations_removes_only_the_devices():
    config = {
        "services": {
            "torchserve": {
                "image": "x",
                "deploy": {
                    "resources": {
                        "reservations": {
                            "devices": [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
                        }
                    }
                },
            },
            "backend": {"image": "y", "deploy": {"resources": {"limits": {"cpus": "1"}}}},
        }
    }
    out = strip_gpu_reservations(config)
    assert "deploy" not in out["services"]["torchserve"]
    assert out["services"]["backend"]["deploy"] == {"resources": {"limits": {"cpus": "1"}}}


KEY_FILE = "/home/model-server/keys/key_file.json"


def _key_doc(container) -> dict:
    return json.loads(container.exec_run(["cat", KEY_FILE]).output)


def test_compose_stack_lifecycle(docker_engine, tmp_path):
    """Up with the scenario's batching applied for real, keys that expire during the test
    (0.75 min), a reload after expiry that drains, a kill + start that moves the host ports."""
    spec = _spec(prometheus=True, batch_size=4, max_batch_delay_ms=5, token_expiration_min=0.75)
    stack = ComposeStack(spec, tmp_path)
    with stack:
        endpoints = stack.endpoints
        assert endpoints.ws_url.startswith("ws://127.0.0.1:")
        with urllib.request.urlopen(f"{endpoints.http_url}/ready", timeout=5) as response:
            assert response.status == 200
        procs = stack.processes()
        assert procs["backend"] and procs["torchserve"] and procs["prometheus"]
        # Issue 22: the monitoring profile's Prometheus scrapes both services (TorchServe found
        # through Docker's DNS) with the project's rules loaded.
        prom = endpoints.prometheus_url
        assert prom is not None
        assert _prom_value(prom, 'sum(up{job="backend"})', want=1.0) == 1.0
        assert _prom_value(prom, 'sum(up{job="torchserve"})', want=1.0) == 1.0
        with urllib.request.urlopen(f"{prom}/api/v1/rules", timeout=5) as response:
            groups = {g["name"] for g in json.load(response)["data"]["groups"]}
        assert {"signflow"} == groups
        # Issue 11 item 2: what TorchServe REPORTS it runs, not the archive's 16 / 50 ms / 2.
        (running,) = stack.describe()["torchserve"]["running"]
        assert running == {
            "replica": "torchserve",
            "checked_after": "start",
            "version": "1.0",
            "batch_size": 4,
            "max_batch_delay_ms": 5,
            "workers": 1,
            "ready_workers": 1,
        }
        (ts,) = stack._containers("torchserve")

        # Past the keys' expiry (45 s after they were minted): the container's health check
        # renewed its management key and stays healthy; the driver's reload renews as needed.
        first = _key_doc(ts)
        expiry = key_expiry(first)
        assert expiry is not None
        time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds() + 3.0))
        ts.reload()
        assert ts.attrs["State"]["Health"]["Status"] == "healthy"
        assert _key_doc(ts)["management"]["key"] != first["management"]["key"]

        timings = stack.reload_model("2.0")
        assert timings["to_version"] == "2.0"
        assert set(timings) <= set(ReloadResult.__annotations__), timings.keys()
        assert {*ReloadResult.__required_keys__, "copy_s", "register_s"} <= set(timings)
        assert timings["drained"] is True and timings["drain_s"] >= 0
        versions = stack._management(ts).versions()
        assert versions == {"2.0"}

        stack.kill_torchserve()
        ts.reload()
        assert ts.attrs["State"]["Running"] is False
        # What SignflowTorchServeDown reads: no TorchServe target up any more.
        expr = 'sum(up{job="torchserve"}) or vector(0)'
        assert _prom_value(stack.endpoints.prometheus_url, expr, want=0.0) == 0.0
        stack.start_torchserve()
        # Issue 10 item 8: new ephemeral host ports, re-resolved; the new ones answer.
        moved = stack.endpoints
        assert moved.torchserve_metrics_url != endpoints.torchserve_metrics_url
        assert moved.torchserve_management_url != endpoints.torchserve_management_url
        with urllib.request.urlopen(moved.torchserve_metrics_url, timeout=10) as response:
            assert response.status == 200
        (running,) = stack.describe()["torchserve"]["running"]
        assert (running["version"], running["batch_size"], running["checked_after"]) == (
            "2.0",
            4,
            "start_torchserve",
        )
        described = stack.describe()
        assert set(described) <= set(StackDescription.__annotations__), described.keys()
        assert "SIGNFLOW_ADMIN_TOKEN" in described["env"]
        assert described["env"]["SIGNFLOW_ADMIN_TOKEN"] == "***"
        assert described["env"]["SIGNFLOW_BATCH_SIZE"] == "4"
        assert _key_doc(ts)["management"]["key"] not in json.dumps(described)
    assert _project_leftovers(docker_engine, stack.project) == []
    assert (tmp_path / "logs").glob("*torchserve*.log")


def _prom_value(url: str, expr: str, want: float, timeout_s: float = 30.0) -> float | None:
    """The instant value of ``expr`` once it equals ``want`` (or the last one seen, or None)."""
    deadline = time.monotonic() + timeout_s
    value: float | None = None
    while time.monotonic() < deadline:
        query = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as response:
            result = json.load(response)["data"]["result"]
        value = float(result[0]["value"][1]) if result else None
        if value == want:
            break
        time.sleep(1.0)
    return value


def test_relative_run_dir_still_bind_mounts_the_model_store(tmp_path, monkeypatch):
    """`harness run --out reports/x` gives a relative run dir; the bind mount must stay a path.

    Only the compose CLI is needed (`config` talks to no engine), so this runs without Docker.
    """
    try:
        cli = detect_compose_cli()
    except StackError as exc:
        pytest.skip(f"no compose CLI: {exc}")
    store = tmp_path / "store"
    store.mkdir()
    (store / "signflow-1.0.mar").write_bytes(b"not a real archive; only copied")
    monkeypatch.chdir(tmp_path)
    stack = ComposeStack(_spec(), Path("reports/run"), model_store=store)
    stack.log_dir.mkdir(parents=True)
    stack._cli, stack.gpu = cli, False
    stack._prepare_model_store()
    stack._write_resolved_config()
    config = yaml.safe_load(stack._resolved.read_text())
    volumes = config["services"]["torchserve"]["volumes"]
    sources = [v["source"] if isinstance(v, dict) else v.split(":")[0] for v in volumes]
    expected = str(tmp_path / "reports" / "run" / "model-store")
    assert expected in sources, sources
