"""The compose driver against a real Docker engine: start, fault, reload, and nothing left."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness.stack.base import StackError
from harness.stack.compose import ComposeStack, detect_compose_cli, strip_gpu_reservations

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _spec(**overrides):
    spec = {
        "driver": "compose",
        "use_torchserve": True,
        "compose": {"file": "docker-compose.yml", "overrides": ["docker-compose.local.yml"]},
        "torchserve": {
            "model_version": "1.0",
            "workers": 1,
            "batch_size": 16,
            "max_batch_delay_ms": 50,
            "token_auth": True,
        },
    }
    spec.update(overrides)
    return spec


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


def test_compose_stack_lifecycle(docker_engine, tmp_path):
    stack = ComposeStack(_spec(), tmp_path)
    with stack:
        endpoints = stack.endpoints
        assert endpoints.ws_url.startswith("ws://127.0.0.1:")
        with urllib.request.urlopen(f"{endpoints.http_url}/ready", timeout=5) as response:
            assert response.status == 200
        procs = stack.processes()
        assert procs["backend"] and procs["torchserve"]

        stack.kill_torchserve()
        (ts,) = [
            c
            for c in docker_engine.containers.list(
                all=True,
                filters={
                    "label": [
                        f"com.docker.compose.project={stack.project}",
                        "com.docker.compose.service=torchserve",
                    ]
                },
            )
        ]
        ts.reload()
        assert ts.attrs["State"]["Running"] is False
        stack.start_torchserve()

        timings = stack.reload_model("2.0")
        assert timings["to_version"] == "2.0"
        management = stack.endpoints.torchserve_management_url
        key = json.loads(ts.exec_run(["cat", "/home/model-server/keys/key_file.json"]).output)
        request = urllib.request.Request(
            f"{management}/models/signflow/all",
            headers={"Authorization": f"Bearer {key['management']['key']}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            versions = {m["modelVersion"] for m in json.load(response)}
        assert versions == {"2.0"}
        described = stack.describe()
        assert "SIGNFLOW_ADMIN_TOKEN" in described["env"]
        assert described["env"]["SIGNFLOW_ADMIN_TOKEN"] == "***"
    assert _project_leftovers(docker_engine, stack.project) == []
    assert (tmp_path / "logs").glob("*torchserve*.log")


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
