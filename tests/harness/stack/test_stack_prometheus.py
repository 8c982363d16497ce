"""stack.prometheus: a real Prometheus server scraping a real local stack, rules loaded."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import psutil
import pytest
from websockets.asyncio.client import connect

from backend_patch.app.ml import synthetic
from harness.scenario.models import PrometheusSpec, StackSpec
from harness.stack import make_stack
from harness.stack.local import REPO_ROOT
from harness.stack.prometheus import scrape_config

pytestmark = pytest.mark.slow

MODELS = REPO_ROOT / "build" / "models"


def test_scrape_config_has_one_job_per_component(tmp_path: Path) -> None:
    doc = scrape_config(
        "http://127.0.0.1:8000/metrics",
        ["http://127.0.0.1:8082/metrics", "http://127.0.0.1:9082/metrics"],
        scrape_interval_s=1.0,
        rule_files=[tmp_path / "a.yml"],
    )
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}  # type: ignore[index,union-attr]
    assert jobs["backend"]["static_configs"] == [{"targets": ["127.0.0.1:8000"]}]
    assert jobs["torchserve"]["static_configs"] == [
        {"targets": ["127.0.0.1:8082", "127.0.0.1:9082"]}
    ]
    assert doc["global"] == {"scrape_interval": "1000ms", "evaluation_interval": "1000ms"}


def _query(url: str, expr: str) -> list[dict]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    result: list[dict] = r.json()["data"]["result"]
    return result


async def _stream(ws_url: str, frames: list[dict]) -> None:
    async with connect(ws_url) as ws:
        for frame in frames:
            await ws.send(json.dumps(frame))
            await ws.recv()


@pytest.mark.skipif(
    not (MODELS / "1.0" / "metadata.json").is_file(), reason="model 1.0 not built (make setup)"
)
def test_local_stack_runs_prometheus_with_the_rules(tmp_path: Path) -> None:
    spec = StackSpec(driver="local", use_torchserve=False, prometheus=PrometheusSpec(enabled=True))
    with make_stack(spec, tmp_path) as stack:
        url = stack.endpoints.prometheus_url
        assert url is not None and url.startswith("http://127.0.0.1:")
        pid = stack.processes()["prometheus"][0]
        assert "prometheus" in psutil.Process(pid).name()
        # The project's rules are loaded.
        groups = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {"signflow"} == {g["name"] for g in groups}
        frames = [dict(f) for f in synthetic.generate_stream(num_signs=2, seed=3)]
        asyncio.run(_stream(stack.endpoints.ws_url, frames))
        deadline = time.monotonic() + 20
        got: list[dict] = []
        while time.monotonic() < deadline and not got:
            got = _query(url, 'signflow_frames_total{job="backend",route="local"}')
            got = [g for g in got if float(g["value"][1]) >= len(frames)]
            time.sleep(0.5)
        assert got, "Prometheus never scraped the frames the backend counted"
        assert _query(url, 'up{job="backend"}')[0]["value"][1] == "1"
        assert stack.describe()["endpoints"]["prometheus_url"] == url
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert (tmp_path / "prometheus" / "prometheus.yml").is_file()


def test_success_queries_are_recording_rules_of_the_rules_files() -> None:
    """Each query a run's results link to is a recording rule Prometheus loads (a renamed
    rule would leave the report linking to an empty graph)."""
    import yaml

    from harness.stack.prometheus import RULES_DIR, SUCCESS_QUERIES, success_queries

    recorded = {
        rule["record"]
        for path in RULES_DIR.glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    assert {q[0] for q in SUCCESS_QUERIES} <= recorded
    assert len(success_queries(True, True)) == len(SUCCESS_QUERIES)
    backend_only = {r for r, _ in success_queries(False, False)}
    assert "signflow:torchserve_up:min" not in backend_only
    assert "route:signflow_frame_latency_seconds:p95_5m" in backend_only
