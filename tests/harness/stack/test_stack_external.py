"""ExternalStack: load and collection only, against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.scenario.models import ExternalSpec, StackSpec
from harness.stack import (
    ReloadResult,
    StackDescription,
    StackError,
    StackOperationUnsupported,
    make_stack,
)
from harness.stack.base import RunningConfigDoc
from harness.stack.procs import free_port


class _Backend(BaseHTTPRequestHandler):
    """A tiny real server standing in for a user's backend: /ready and /admin/rollout."""

    rollout = 100
    token = "s3cret-admin"

    def do_GET(self) -> None:
        if self.path == "/ready":
            self._reply(200, {"ready": True})
        else:
            self._reply(404, {})

    def do_PUT(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self._reply(401, {"detail": "bad token"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).rollout = body["percent"]
        self._reply(200, {"percent": body["percent"]})

    def _reply(self, status: int, doc: dict) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def backend_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _spec(http_url: str, **extra: str) -> StackSpec:
    ws = http_url.replace("http://", "ws://") + "/api/v1/translate/stream"
    return StackSpec(
        driver="external", external=ExternalSpec(ws_url=ws, http_url=http_url, **extra)
    )


def test_external_stack_refuses_kill_start_and_reload(tmp_path: Path, backend_url: str) -> None:
    with make_stack(_spec(backend_url), tmp_path) as stack:
        assert stack.name == "external"
        assert stack.endpoints.backend_metrics_url == f"{backend_url}/metrics"
        assert stack.processes() == {}
        with pytest.raises(StackOperationUnsupported, match="kill_torchserve"):
            stack.kill_torchserve()
        with pytest.raises(StackOperationUnsupported, match="start_torchserve"):
            stack.start_torchserve()
        with pytest.raises(StackOperationUnsupported, match="torchserve_management_url"):
            stack.reload_model("2.0")
        with pytest.raises(StackOperationUnsupported, match="admin_token_env"):
            stack.set_rollout(10)
        stack.collect_logs(tmp_path / "logs")
    assert (tmp_path / "logs" / "EXTERNAL_STACK.txt").is_file()


def test_external_rollout_uses_the_token_from_the_named_env_var(
    tmp_path: Path, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_ADMIN_TOKEN", _Backend.token)
    with make_stack(_spec(backend_url, admin_token_env="MY_ADMIN_TOKEN"), tmp_path) as stack:
        stack.set_rollout(10)
        assert _Backend.rollout == 10
        assert _Backend.token not in json.dumps(stack.describe())
    monkeypatch.setenv("MY_ADMIN_TOKEN", "wrong")
    with (
        make_stack(_spec(backend_url, admin_token_env="MY_ADMIN_TOKEN"), tmp_path) as stack,
        pytest.raises(StackError, match="HTTP 401"),
    ):
        stack.set_rollout(20)


def test_external_stack_not_answering_fails_with_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    stack = make_stack(_spec(url), tmp_path)
    stack.ready_timeout_s = 0.5
    with pytest.raises(StackError, match=r"stack\.external\.http_url: .*/ready not ready"), stack:
        pytest.fail("must not enter")


def test_external_stack_needs_its_urls(tmp_path: Path) -> None:
    # A missing one is named at the door (the model); an empty one by the driver.
    with pytest.raises(ValueError, match=r"missing required field 'stack\.external\.http_url'"):
        make_stack({"driver": "external", "external": {"ws_url": "ws://x"}}, tmp_path)
    with pytest.raises(StackError, match="ws_url and http_url"):
        make_stack(_spec(""), tmp_path)


@pytest.mark.slow
def test_external_reload_drains_and_records_what_torchserve_runs(
    tmp_path: Path, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The external driver reloads through the shared client (drain included) and records what
    the real TorchServe reports it runs, before and after the reload."""
    from serving.local import LocalTorchServe
    from serving.settings import TorchServeSettings

    store = Path(__file__).resolve().parents[3] / "build" / "model-store"
    if not all((store / f"signflow-{v}.mar").is_file() for v in ("1.0", "2.0")):
        pytest.skip("archives not built (make setup)")
    with LocalTorchServe(
        store, TorchServeSettings(batch_size=4, max_batch_delay_ms=7, workers=1)
    ) as ts:
        monkeypatch.setenv("SIGNFLOW_TEST_TS_KEY", ts.keys["management"])
        spec = _spec(
            backend_url,
            torchserve_management_url=ts.management_url,
            torchserve_token_env="SIGNFLOW_TEST_TS_KEY",
        )
        with make_stack(spec, tmp_path) as stack:
            described = stack.describe()
            assert set(described) <= set(StackDescription.__annotations__), described.keys()
            before = described["torchserve_running"]
            # What serving's RunningConfig gives is exactly the typed RunningConfigDoc.
            assert before is not None and set(before) == set(RunningConfigDoc.__annotations__)
            assert before == {
                "version": "1.0",
                "batch_size": 4,
                "max_batch_delay_ms": 7,
                "workers": 1,
                "ready_workers": 1,
            }
            result = stack.reload_model("2.0")
            assert result["from_version"] == "1.0" and result["drained"] is True
            assert set(result) <= set(ReloadResult.__annotations__), result.keys()
            assert ReloadResult.__required_keys__ <= set(result)
            after = stack.describe()["torchserve_running"]
            # The new version keeps the batching the old one ran with.
            assert after == {**before, "version": "2.0"}
            assert ts.keys["management"] not in json.dumps(stack.describe())
