"""The local stack: TorchServe (through serving.local) and the backend as processes on loopback.

No Docker needed: this is the embedded default. TorchServe runs only when the scenario sets
``use_torchserve``; the backend always runs, as ``python -m backend_patch`` (uvicorn) on a free
port, with the settings of the scenario passed as environment variables. Everything started
here is stopped in ``__exit__``, whatever happened before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import psutil

from harness.scenario.backend_env import split_inherited
from harness.scenario.models import StackSpec

from .base import (
    DeferSigint,
    LocalModelInfo,
    ReloadResult,
    ReplicaRunning,
    StackDescription,
    StackEndpoints,
    StackError,
    StackOperationUnsupported,
    mask_secrets,
    put_rollout,
    require_spec,
    sha256_file,
    torchserve_provenance,
    verify_running,
)

# PIDS_FILE (next to the logs) lists every process the stack ever ran, so a test, a person or
# the next run can check that none of them survived (surviving_processes, re-exported).
from .procs import PIDS_FILE, ManagedProcess, free_port, wait_http_ok
from .procs import ProcessRecord as _PidRecord
from .procs import surviving_processes as surviving_processes
from .prometheus import LocalPrometheus

if TYPE_CHECKING:
    from serving.local import LocalTorchServe

logger = logging.getLogger("harness")
REPO_ROOT = Path(__file__).resolve().parents[2]
BACKEND_READY_TIMEOUT_S = 120.0
BACKEND_STOP_GRACE_S = 5.0
# The stack shares the machine with the load generator here. When the CPU saturates, the
# generator must keep its schedule (else the whole run is INVALID), so every stack process runs
# below it: the stack still gets all the CPU the generator does not use (about 5-10 %
# of a core at 120 frames/s), it just yields first. Set at exec (`nice`), so start-up, the
# heaviest part, is covered and children inherit it. Remote and compose stacks are unaffected.
STACK_NICENESS = 10
UNIX_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; keep a margin


class LocalStack:
    """TorchServe (optional) + backend as local processes on free loopback ports."""

    name = "local"

    def __init__(
        self,
        spec: StackSpec,
        run_dir: Path,
        *,
        model_store: Path | None = None,
        models_dir: Path | None = None,
        ready_timeout_s: float = BACKEND_READY_TIMEOUT_S,
        python: str = sys.executable,
    ) -> None:
        self.spec = spec = require_spec(spec, "LocalStack", "local")
        self.run_dir = Path(run_dir)
        self.log_dir = self.run_dir / "logs"
        self.model_store = Path(model_store or REPO_ROOT / "build" / "model-store")
        self.models_dir = Path(models_dir or REPO_ROOT / "build" / "models")
        self.ready_timeout_s = ready_timeout_s
        self.python = python

        self.use_torchserve = spec.use_torchserve
        self.rollout_percent = spec.rollout_percent
        # What every TorchServe replica runs (the one settings type, serving.settings).
        self.settings = spec.torchserve
        self.model_version = self.settings.model_version
        self.token_auth = self.settings.token_auth
        # More than one only with token auth off (StackSpec's rule).
        self.replicas = spec.torchserve_replicas if self.use_torchserve else 0
        self.inference_workers = spec.backend.inference_workers
        self.backend_env: dict[str, str] = dict(spec.backend.env)
        prom = spec.prometheus
        self._prometheus: LocalPrometheus | None = (
            LocalPrometheus(self.run_dir, self.log_dir, scrape_interval_s=prom.scrape_interval_s)
            if prom.enabled
            else None
        )

        # Fresh per run, handed to the backend by environment only: never logged, never
        # written to results (describe() leaves it out).
        self._admin_token = secrets.token_urlsafe(24)
        # One LocalTorchServe per replica (empty without TorchServe); the backend spreads its
        # requests over all of them, the timeline's kill/start/reload act on all of them.
        self._replicas: list[LocalTorchServe] = []
        self._backend: ManagedProcess | None = None
        self._backend_port: int | None = None
        self._current_version = self.model_version
        self._pids = _PidRecord(self.log_dir / PIDS_FILE)
        self._timings: dict[str, float] = {}
        self._archive_hashes: dict[str, str] | None = None
        self._short_ts_dirs: list[Path] = []
        self._inherited_dropped: dict[str, str] = {}
        self._inherited_runtime: dict[str, str] = {}
        # What each replica's TorchServe reports it runs (GET /models/signflow), per check.
        self._running: list[ReplicaRunning] = []

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        """Start TorchServe (if enabled) and the backend; return once both are ready."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # No Ctrl-C deferral here: an interrupt during start-up must stop the start at once;
        # the except clause then tears down whatever was already running.
        try:
            self._check_artifacts()
            # Both start in parallel (each spends seconds importing torch and loading a model);
            # the backend only needs TorchServe's URL and key-file path, known before it runs.
            started = time.monotonic()
            if self.use_torchserve:
                self._replicas = [self._make_torchserve(i) for i in range(self.replicas)]
                self._spawn_torchserve()
            self._spawn_backend()
            if self.use_torchserve:
                self._wait_torchserve()
                self._verify_running("start")
                self._timings["torchserve_ready_s"] = time.monotonic() - started
            self._wait_backend()
            if self._prometheus is not None:
                # Started last: it needs the backend's port, and nothing waits on it.
                ep = self.endpoints
                self._timings["prometheus_ready_s"] = self._prometheus.start(
                    ep.backend_metrics_url, ep.all_torchserve_metrics_urls(), STACK_NICENESS
                )
                self._pids.add("prometheus", self._prometheus.pids())
            self._timings["stack_ready_s"] = time.monotonic() - started
            self._record_pids()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop everything this stack started (always), then gather the logs."""
        self._teardown()

    def _teardown(self) -> None:
        with DeferSigint():
            errors: list[str] = []
            # Record the latest pids (workers restart) so the record covers what we stop.
            with contextlib.suppress(Exception):
                self.processes()
            if self._prometheus is not None:
                try:
                    self._prometheus.stop()
                except Exception as exc:  # keep going: the rest must still be stopped
                    errors.append(f"prometheus: {exc}")
            if self._backend is not None:
                try:
                    self._backend.stop(BACKEND_STOP_GRACE_S)
                except Exception as exc:  # keep going: TorchServe must still be stopped
                    errors.append(f"backend: {exc}")
            for i, ts in enumerate(self._replicas):
                try:
                    ts.stop()
                except Exception as exc:  # keep going: the other replicas must still stop
                    errors.append(f"{self._replica_name(i)}: {exc}")
            with contextlib.suppress(OSError):
                self._copy_torchserve_logs(self.log_dir)
            for short_dir in self._short_ts_dirs:
                shutil.rmtree(short_dir, ignore_errors=True)
            if errors:
                # The processes are gone as far as we can make them; say what went wrong.
                logger.warning("stack teardown problems: %s", "; ".join(errors))

    def _check_artifacts(self) -> None:
        """Fail before starting anything when a needed archive or model is missing."""
        if self.use_torchserve:
            archive = self.model_store / f"signflow-{self.model_version}.mar"
            if not archive.is_file():
                raise StackError(
                    f"stack.torchserve.model_version: archive {archive} not found; "
                    "build it with `make setup`"
                )

    def _replica_name(self, index: int) -> str:
        """``torchserve`` alone, ``torchserve-1``.. with replicas (log and run folder names)."""
        return "torchserve" if self.replicas == 1 else f"torchserve-{index + 1}"

    def _make_torchserve(self, index: int) -> LocalTorchServe:
        try:
            from serving.local import LocalTorchServe
        except ImportError as exc:
            raise StackError(f"serving.local is not importable: {exc}") from exc
        return LocalTorchServe(
            self.model_store,
            self.settings,
            run_dir=self._torchserve_dir(index),
            niceness=STACK_NICENESS,
        )

    def _verify_running(self, when: str) -> None:
        """Read what every replica runs; StackError naming each field that differs."""
        running: list[ReplicaRunning] = []
        for i, ts in enumerate(self._replicas):
            name = self._replica_name(i)
            doc = verify_running(name, ts.management, self._current_version, ts.settings)
            running.append(ReplicaRunning(replica=name, checked_after=when, **doc))
        self._running = running

    def _torchserve_dir(self, index: int) -> Path:
        """<run_dir>/torchserve[-N], or a short temp dir when that path is too long for sockets.

        TorchServe's workers listen on AF_UNIX sockets under ``<dir>/tmp/.ts.sock.<port>``;
        Linux caps such a path at 107 bytes and the worker dies with "AF_UNIX path too long"
        (seen with pytest's temp dirs). Logs are copied back into the run dir at teardown.
        """
        wanted = (self.run_dir / self._replica_name(index)).resolve()
        if len(str(wanted / "tmp" / ".ts.sock.65535")) <= UNIX_SOCKET_PATH_MAX:
            return wanted
        short_dir = Path(tempfile.mkdtemp(prefix="sf-ts-"))
        self._short_ts_dirs.append(short_dir)
        return short_dir

    def _spawn_torchserve(self) -> None:
        # Every replica's Java starts before any is awaited: their start-ups overlap.
        for i, ts in enumerate(self._replicas):
            try:
                ts.start()
            except Exception as exc:
                name = self._replica_name(i)
                raise StackError(f"TorchServe ({name}) did not start: {exc}") from exc
        with contextlib.suppress(Exception):
            self._pids.add("torchserve", self._torchserve_pids())

    def _wait_torchserve(self) -> None:
        for i, ts in enumerate(self._replicas):
            try:
                ts.wait_ready()
            except Exception as exc:
                raise StackError(
                    f"TorchServe ({self._replica_name(i)}) did not become ready: {exc}"
                ) from exc

    def _backend_environment(self) -> dict[str, str]:
        # The scenario decides the system under test: inherited backend settings are dropped
        # (recorded in describe()), only stack.backend.env and the lines below set them.
        env, self._inherited_dropped, self._inherited_runtime = split_inherited(os.environ)
        env.update(
            {
                "USE_TORCHSERVE": "true" if self.use_torchserve else "false",
                "TORCHSERVE_ROLLOUT_PERCENT": str(self.rollout_percent),
                "INFERENCE_WORKERS": str(self.inference_workers),
                "ADMIN_TOKEN": self._admin_token,
                "MODEL_DIR": str(self.models_dir / self.model_version),
                "PYTHONUNBUFFERED": "1",
            }
        )
        # A TorchServe token inherited from the caller's shell would override the key file.
        env.pop("TORCHSERVE_TOKEN", None)
        if self.use_torchserve:
            # Comma-separated: the backend's client spreads requests over the replicas.
            env["TORCHSERVE_URL"] = ",".join(str(ts.inference_url) for ts in self._replicas)
            if self.token_auth:  # one replica (StackSpec's rule), so one key file
                env["TORCHSERVE_KEY_FILE"] = str(self._replicas[0].key_file)
            # Always, auth or not: the backend reads the served batch delay there to floor its
            # hedge delay (without it a 200 ms batch delay looks like a dead TorchServe). The
            # replicas share one configuration, so the first one speaks for all.
            env["TORCHSERVE_MANAGEMENT_URL"] = str(self._replicas[0].management_url)
        env.update(self.backend_env)
        return env

    def _spawn_backend(self) -> None:
        port = free_port()
        self._backend = ManagedProcess(
            "backend",
            [
                "nice",
                "-n",
                str(STACK_NICENESS),
                self.python,
                "-m",
                "backend_patch",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            self._backend_environment(),
            REPO_ROOT,
            self.log_dir,
        )
        self._backend_port = port
        # Recorded at once: a backend that dies during start-up is never seen by processes().
        self._pids.add("backend", [self._backend.pid])

    def _wait_backend(self) -> None:
        # A free port can be taken between our probe and uvicorn's bind; retry on a fresh one
        # when the log says so, fail on anything else.
        for attempt in range(3):
            assert self._backend is not None
            try:
                self._timings["backend_ready_s"] = wait_http_ok(
                    f"http://127.0.0.1:{self._backend_port}/ready",
                    self._backend,
                    self.ready_timeout_s,
                    "backend (python -m backend_patch)",
                )
                return
            except StackError as exc:
                self._backend.stop(BACKEND_STOP_GRACE_S)
                if "address already in use" not in str(exc).lower() or attempt == 2:
                    raise
                self._spawn_backend()

    # ---- endpoints and processes -----------------------------------------------------------

    @property
    def endpoints(self) -> StackEndpoints:
        """URLs of the backend and, when present, TorchServe."""
        if self._backend_port is None:
            raise StackError("the stack is not started")
        http_url = f"http://127.0.0.1:{self._backend_port}"
        ts = self._replicas[0] if self._replicas else None
        return StackEndpoints(
            ws_url=f"ws://127.0.0.1:{self._backend_port}/api/v1/translate/stream",
            http_url=http_url,
            backend_metrics_url=f"{http_url}/metrics",
            torchserve_metrics_url=str(ts.metrics_url) if ts else None,
            torchserve_management_url=str(ts.management_url) if ts else None,
            torchserve_inference_url=str(ts.inference_url) if ts else None,
            torchserve_metrics_urls=tuple(str(r.metrics_url) for r in self._replicas),
            prometheus_url=self._prometheus.url if self._prometheus is not None else None,
        )

    def processes(self) -> dict[str, list[int]]:
        """Live pids per component, queried now (they change after kill/start)."""
        result: dict[str, list[int]] = {}
        if self._backend is not None:
            result["backend"] = self._backend.pids()
        if self._replicas:
            result["torchserve"] = self._torchserve_pids()
        if self._prometheus is not None and self._prometheus.pids():
            result["prometheus"] = self._prometheus.pids()
        for component, pids in result.items():
            self._pids.add(component, pids)
        return result

    def _torchserve_pids(self) -> list[int]:
        """Java frontends and their workers, all replicas together (one component)."""
        pids: list[int] = []
        for ts in self._replicas:
            pid = ts.pid
            if not pid or not psutil.pid_exists(pid):
                continue
            try:
                workers = [int(p) for p in ts.worker_pids()]
            except Exception:  # Java died between the two calls
                workers = []
            pids += [int(pid), *(p for p in workers if p != pid)]
        return pids

    def _record_pids(self) -> None:
        self.processes()

    # ---- operations for the timeline --------------------------------------------------------

    def _require_torchserve(self, operation: str) -> list[LocalTorchServe]:
        if not self._replicas:
            raise StackOperationUnsupported(
                f"{operation}: TorchServe is not part of this stack (stack.use_torchserve is false)"
            )
        return self._replicas

    def kill_torchserve(self) -> None:
        """SIGKILL every TorchServe frontend (fault injection); the backend must fall back."""
        for ts in self._require_torchserve("kill_torchserve"):
            ts.kill()

    def start_torchserve(self) -> None:
        """Start TorchServe again on the same ports; return once every model is READY."""
        self._require_torchserve("start_torchserve")
        # The launcher remembers the default version (reloads included) and reuses its ports.
        start = time.monotonic()
        self._spawn_torchserve()
        self._wait_torchserve()
        self._verify_running("start_torchserve")
        self._timings["torchserve_restart_s"] = time.monotonic() - start
        self._record_pids()

    def reload_model(self, version: str) -> ReloadResult:
        """Register ``version``, make it the default, unregister the old one; return timings.

        With replicas, one replica after the other (a rolling reload): the others keep serving
        the old version meanwhile, which the mixed-version window of the analysis shows.
        """
        replicas = self._require_torchserve("reload_model")
        version = str(version)
        archive = self.model_store / f"signflow-{version}.mar"
        if not archive.is_file():
            raise StackError(f"reload_model: archive {archive} not found")
        old = self._current_version
        start = time.monotonic()
        per_replica: list[ReloadResult] = []
        for i, ts in enumerate(replicas):
            try:
                timings = ts.reload(version)
            except Exception as exc:
                raise StackError(
                    f"reload_model {old} -> {version} failed on {self._replica_name(i)}: {exc}"
                ) from exc
            # serving.local is not type-checked: its reload returns ManagementClient.reload's
            # timings, which ReloadResult describes.
            per_replica.append(cast(ReloadResult, timings if isinstance(timings, dict) else {}))
        total = time.monotonic() - start
        self._current_version = version
        self._verify_running("reload_model")
        self._record_pids()
        # The first replica's own figures (its from/to versions and total_s included) win.
        result = ReloadResult(from_version=old, to_version=version, total_s=total)
        result.update(per_replica[0])
        if len(per_replica) > 1:
            result["replicas"] = per_replica
        return result

    def set_rollout(self, percent: int) -> None:
        """Change the share of new sessions sent to TorchServe (backend PUT /admin/rollout)."""
        self.rollout_percent = put_rollout(self.endpoints.http_url, self._admin_token, percent)

    # ---- provenance and logs ----------------------------------------------------------------

    def describe(self) -> StackDescription:
        """Configuration and archive hashes for provenance. No secrets."""
        doc: StackDescription = {
            "driver": self.name,
            "use_torchserve": self.use_torchserve,
            "rollout_percent": self.rollout_percent,
            "backend": {
                "command": "python -m backend_patch --host 127.0.0.1 --port <free>",
                "inference_workers": self.inference_workers,
                "model_dir": str(self.models_dir / self.model_version),
                "env": mask_secrets(self.backend_env),
                # Backend settings exported in the caller's shell, NOT passed to the backend.
                "inherited_dropped": mask_secrets(self._inherited_dropped),
                # Kept: they tune the backend's libraries (threads, devices).
                "inherited_runtime": mask_secrets(self._inherited_runtime),
            },
            "torchserve": None,
            "model_archives": {},
            "local_model": self._local_model_info(),
            "startup_s": dict(self._timings),
        }
        if self.use_torchserve:
            doc["torchserve"] = {
                **torchserve_provenance(self.settings, self._current_version),
                "model_store": str(self.model_store),
                "replicas": self.replicas,
                # What each TorchServe REPORTED it runs at the last check (not what was asked).
                "running": list(self._running),
            }
            doc["model_archives"] = self._archives()
        with contextlib.suppress(StackError):
            doc["endpoints"] = self.endpoints.as_dict()
        return doc

    def _archives(self) -> dict[str, str]:
        if self._archive_hashes is None:
            self._archive_hashes = {
                p.name: sha256_file(p) for p in sorted(self.model_store.glob("signflow-*.mar"))
            }
        return dict(self._archive_hashes)

    def _local_model_info(self) -> LocalModelInfo | None:
        model_dir = Path(self.backend_env.get("MODEL_DIR", self.models_dir / self.model_version))
        try:
            meta = json.loads((model_dir / "metadata.json").read_text())
        except (OSError, ValueError):
            return None
        return {"dir": str(model_dir), "version": meta.get("version"), "sha256": meta.get("sha256")}

    def collect_logs(self, dest: Path) -> None:
        """Copy the backend logs and TorchServe's logs into ``dest``."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        if dest.resolve() != self.log_dir.resolve() and self.log_dir.is_dir():
            for path in self.log_dir.glob("*.log"):
                shutil.copy2(path, dest / path.name)
        self._copy_torchserve_logs(dest)

    def _copy_torchserve_logs(self, dest: Path) -> None:
        """Each replica's TorchServe logs into ``dest/torchserve[-N]``."""
        for i, ts in enumerate(self._replicas):
            src = Path(ts.log_dir)
            target = dest / self._replica_name(i)
            if src.is_dir() and src.resolve() != target.resolve():
                shutil.copytree(src, target, dirs_exist_ok=True)
