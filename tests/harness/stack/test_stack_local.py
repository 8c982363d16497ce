"""LocalStack with real processes: the backend (uvicorn) and TorchServe on free loopback ports."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psutil
import pytest
from pydantic import ValidationError

from harness.scenario import ScenarioError, StackSpec
from harness.scenario.models import BackendSpec, ExternalSpec, TorchServeSpec
from harness.stack import (
    ReloadResult,
    StackDescription,
    StackError,
    StackOperationUnsupported,
    make_stack,
)
from harness.stack.base import verify_running
from harness.stack.external import ExternalStack
from harness.stack.local import PIDS_FILE, REPO_ROOT, LocalStack, surviving_processes
from serving.settings import TorchServeSettings

MODELS = REPO_ROOT / "build" / "models"
STORE = REPO_ROOT / "build" / "model-store"

needs_model = pytest.mark.skipif(
    not (MODELS / "1.0" / "metadata.json").is_file(), reason="model 1.0 not built (make setup)"
)
needs_archives = pytest.mark.skipif(
    not all((STORE / f"signflow-{v}.mar").is_file() for v in ("1.0", "2.0")),
    reason="archives not built (make setup)",
)


def _spec(
    use_torchserve: bool,
    *,
    model_version: str = "1.0",
    token_auth: bool = True,
    replicas: int = 1,
    **backend_env: str,
) -> StackSpec:
    return StackSpec(
        driver="local",
        use_torchserve=use_torchserve,
        rollout_percent=100,
        torchserve=TorchServeSpec(
            batch_size=8,
            max_batch_delay_ms=5,
            workers=1,
            model_version=model_version,
            token_auth=token_auth,
        ),
        backend=BackendSpec(inference_workers=1, env=backend_env),
        torchserve_replicas=replicas,
    )


def _alive(pids: list[int]) -> bool:
    return bool(pids) and all(psutil.pid_exists(p) for p in pids)


def _admin_get(stack, token: str) -> httpx.Response:
    return httpx.get(
        f"{stack.endpoints.http_url}/admin/rollout",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def _assert_nothing_left(run_dir: Path) -> None:
    record = run_dir / "logs" / PIDS_FILE
    assert record.is_file(), "the stack did not record its pids"
    assert surviving_processes(record) == []


@pytest.mark.slow
@needs_model
def test_backend_only_stack_starts_serves_rollout_and_stops(tmp_path: Path) -> None:
    with make_stack(_spec(False), tmp_path) as stack:
        assert stack.name == "local"
        ep = stack.endpoints
        assert ep.ws_url.startswith("ws://127.0.0.1:") and ep.torchserve_metrics_url is None
        assert httpx.get(f"{ep.http_url}/ready", timeout=5).status_code == 200
        assert "signflow_" in httpx.get(ep.backend_metrics_url, timeout=5).text
        procs = stack.processes()
        assert set(procs) == {"backend"} and _alive(procs["backend"])

        stack.set_rollout(25)
        token = stack._admin_token  # the test may look; results never see it
        assert _admin_get(stack, token).json()["percent"] == 25
        with pytest.raises(ValueError, match=r"0\.\.100"):
            stack.set_rollout(101)
        with pytest.raises(StackOperationUnsupported):
            stack.kill_torchserve()

        doc = stack.describe()
        # The typed description is the real one: no key outside StackDescription, none missing.
        assert set(doc) <= set(StackDescription.__annotations__), doc.keys()
        assert StackDescription.__required_keys__ <= set(doc)
        described = json.dumps(doc)
        assert token not in described and '"use_torchserve": false' in described
    assert not any(psutil.pid_exists(p) for p in procs["backend"])
    _assert_nothing_left(tmp_path)
    assert (tmp_path / "logs" / "backend.stderr.log").is_file()


@pytest.mark.slow
@needs_model
@needs_archives
def test_torchserve_stack_kill_start_reload_and_nothing_left(tmp_path: Path) -> None:
    with make_stack(_spec(True), tmp_path) as stack:
        ep = stack.endpoints
        assert ep.torchserve_metrics_url and ep.torchserve_management_url
        first = stack.processes()
        assert _alive(first["backend"]) and _alive(first["torchserve"])
        assert len(first["torchserve"]) >= 2, "Java frontend plus at least one worker"

        stack.kill_torchserve()
        java = first["torchserve"][0]
        assert not psutil.pid_exists(java) or psutil.Process(java).status() == "zombie"
        assert stack.processes()["torchserve"] == []

        stack.start_torchserve()
        again = stack.processes()["torchserve"]
        assert _alive(again) and again[0] != java

        timings = stack.reload_model("2.0")
        assert timings["from_version"] == "1.0" and timings["to_version"] == "2.0"
        assert timings["total_s"] > 0
        assert timings["drained"] is True and timings["drain_s"] >= 0
        # ReloadResult names every step the real reload reports (the cast from serving is
        # only sound while it does), and the steps of the one replica are all there.
        assert set(timings) <= set(ReloadResult.__annotations__), timings.keys()
        steps = {"register_s", "set_default_s", "drain_s", "unregister_s", "pending_at_switch"}
        assert ReloadResult.__required_keys__ | steps <= set(timings)

        doc = stack.describe()
        assert set(doc) <= set(StackDescription.__annotations__), doc.keys()
        assert doc["torchserve"]["model_version"] == "2.0"
        # What TorchServe reports it runs (issue 11 item 2), read after the reload.
        assert doc["torchserve"]["running"] == [
            {
                "replica": "torchserve",
                "checked_after": "reload_model",
                "version": "2.0",
                "batch_size": 8,
                "max_batch_delay_ms": 5,
                "workers": 1,
                "ready_workers": 1,
            }
        ]
        # A TorchServe that runs something else than the scenario asks is a StackError that
        # names the field, asked vs running.
        (ts,) = stack._replicas
        asked = TorchServeSettings(batch_size=4, max_batch_delay_ms=5, workers=1)
        with pytest.raises(StackError, match=r"torchserve: .*batch_size: asked 4, running 8"):
            verify_running("torchserve", ts.management, "2.0", asked, timeout_s=0.5)
        with pytest.raises(StackError, match=r"model_version: asked 1\.0, running 2\.0"):
            verify_running("torchserve", ts.management, "1.0", ts.settings, timeout_s=0.5)
        assert set(doc["model_archives"]) >= {"signflow-1.0.mar", "signflow-2.0.mar"}
        assert all(len(h) == 64 for h in doc["model_archives"].values())
        assert stack._admin_token not in json.dumps(doc)

        dest = tmp_path / "collected"
        stack.collect_logs(dest)
        assert (dest / "backend.stdout.log").is_file()
        assert (dest / "torchserve").is_dir()
    _assert_nothing_left(tmp_path)


@pytest.mark.slow
@needs_model
def test_exception_inside_the_block_still_stops_everything(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), make_stack(_spec(False), tmp_path) as stack:
        pids = stack.processes()["backend"]
        raise RuntimeError("boom")
    assert not any(psutil.pid_exists(p) for p in pids)
    _assert_nothing_left(tmp_path)


@pytest.mark.slow
def test_backend_that_cannot_start_raises_with_log_tail(tmp_path: Path) -> None:
    spec = _spec(False, MODEL_DIR=str(tmp_path / "no-such-model"))
    with pytest.raises(StackError) as info, make_stack(spec, tmp_path):
        pytest.fail("the stack must not start")
    message = str(info.value)
    assert "backend" in message and "before it was ready" in message
    assert "last" in message and "lines" in message, "the log tail is part of the error"
    _assert_nothing_left(tmp_path)


def test_missing_archive_fails_before_starting_anything(tmp_path: Path) -> None:
    spec = _spec(True, model_version="9.9")
    with (
        pytest.raises(StackError, match=r"signflow-9\.9\.mar not found"),
        make_stack(spec, tmp_path),
    ):
        pytest.fail("the stack must not start")


def test_a_mapping_is_validated_at_the_door_naming_the_field(tmp_path: Path) -> None:
    # A library user's mapping is coerced once, by make_stack, with the scenario's messages.
    with pytest.raises(ScenarioError, match=r"make_stack: field 'stack\.driver': Input should be"):
        make_stack({"driver": "kubernetes"}, tmp_path)
    bad = {"driver": "local", "use_torchserve": True, "torchserve": {"batch_size": 0}}
    with pytest.raises(ValueError) as info:
        make_stack(bad, tmp_path)
    assert str(info.value) == (
        "make_stack: field 'stack.torchserve.batch_size': Input should be greater than or "
        "equal to 1 (got 0); accepted: 1..1024"
    )
    with pytest.raises(ValueError, match=r"unknown key 'stack\.backend\.workers' \(allowed"):
        make_stack({"backend": {"workers": 2}}, tmp_path)
    # A secret's value is never echoed (backend.env takes text only).
    with pytest.raises(ValueError) as info:
        make_stack({"backend": {"env": {"API_TOKEN": ("s3cr3t",)}}}, tmp_path)
    assert "field 'stack.backend.env.API_TOKEN'" in str(info.value)
    assert "(value hidden: secret)" in str(info.value) and "s3cr3t" not in str(info.value)
    # A good mapping becomes the model: the driver reads typed attributes.
    stack = make_stack({"use_torchserve": True, "torchserve": {"batch_size": 4}}, tmp_path)
    assert isinstance(stack, LocalStack) and stack.spec == StackSpec(
        use_torchserve=True, torchserve=TorchServeSpec(batch_size=4)
    )
    with pytest.raises(TypeError, match="got list"):
        make_stack([("driver", "local")], tmp_path)  # type: ignore[arg-type]


def test_a_driver_takes_a_stack_spec_only(tmp_path: Path) -> None:
    # No driver reads a mapping (the door validates it): refused, not read with defaults.
    with pytest.raises(
        TypeError, match=r"LocalStack takes a harness\.scenario\.StackSpec, got dict"
    ):
        LocalStack({"driver": "local", "use_torchserve": True}, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ExternalStack takes a harness\.scenario\.StackSpec"):
        external = {"driver": "external", "external": {"ws_url": "ws://x", "http_url": "http://x"}}
        ExternalStack(external, tmp_path)  # type: ignore[arg-type]
    # Nor a spec of another driver: the model's rules hold for the driver it names.
    with pytest.raises(ValueError, match=r"LocalStack: stack\.driver is 'external', not 'local'"):
        LocalStack(
            StackSpec(
                driver="external", external=ExternalSpec(ws_url="ws://x", http_url="http://x")
            ),
            tmp_path,
        )


def test_long_run_dir_gets_a_short_torchserve_dir(tmp_path: Path) -> None:
    # Worker sockets live under TorchServe's dir; a deep run dir would overflow AF_UNIX paths.
    deep = tmp_path / ("d" * 60) / "20261128T035626Z-torchserve"
    stack = make_stack(_spec(True), deep)
    short = stack._torchserve_dir(0)
    assert len(str(short / "tmp" / ".ts.sock.65535")) <= 100
    assert make_stack(_spec(True), Path("/tmp/r"))._torchserve_dir(0) == Path("/tmp/r/torchserve")
    short.rmdir()


def test_replicas_get_their_own_dirs_and_need_token_auth_off(tmp_path: Path) -> None:
    # Refused before anything starts, by the model (the rule's one place), at the field.
    with pytest.raises(
        ValidationError, match=r"2 replicas need stack\.torchserve\.token_auth: false"
    ):
        _spec(True, replicas=2)
    with pytest.raises(ValueError, match=r"field 'stack\.torchserve_replicas': 2 replicas need"):
        make_stack({"use_torchserve": True, "torchserve_replicas": 2}, tmp_path)
    stack = make_stack(_spec(True, replicas=2, token_auth=False), Path("/tmp/r"))
    assert [stack._torchserve_dir(i) for i in (0, 1)] == [
        Path("/tmp/r/torchserve-1"),
        Path("/tmp/r/torchserve-2"),
    ]
