"""Run TorchServe as a local process: isolated dirs and ports, readiness, reload, faults.

``LocalTorchServe`` is what tests, benchmarks and the harness's local stack use. Each instance
gets its own run directory (temp, logs, working dir holding ``key_file.json``), five free
loopback ports (HTTP inference/management/metrics and both gRPC ports), a rendered
config.properties, and token authorization ON unless the settings say ``token_auth=False``.
What TorchServe runs with is one :class:`serving.settings.TorchServeSettings` (ranges there).

From the shell: ``python -m serving.local [--model-version 1.0] [--batch-size 16]
[--max-batch-delay 50] [--workers 2] [--model-store build/model-store] [--no-token-auth]``
prints one JSON line once the model is READY and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from backend_patch.app.ml.keys import parse_key_file
from serving.lifeline import group_alive, guard_group, release_group
from serving.management import (
    DRAIN_TIMEOUT_S,
    MODEL_NAME,
    DrainProbe,
    ManagementClient,
    RunningConfig,
    TorchServeError,
    predict_probe,
    read_key_file_text,
)
from serving.procs import free_port, port_is_free
from serving.procs import pid_alive as _alive
from serving.procs import wait_gone as _wait_gone
from serving.settings import TorchServeSettings, arg_help, arg_type

SERVING_DIR = Path(__file__).resolve().parent
CONFIG_TEMPLATE = SERVING_DIR / "config" / "config.properties"
LOG4J_CONFIG = SERVING_DIR / "config" / "log4j2.xml"
METRICS_CONFIG = SERVING_DIR / "config" / "metrics.yaml"
LOG_TAIL_BYTES = 4000
# The CLI options of the TorchServe settings (serving.settings holds their ranges and units).
CLI_OPTIONS = {
    "batch_size": "--batch-size",
    "max_batch_delay_ms": "--max-batch-delay",
    "workers": "--workers",
}


def _check_launcher(
    *,
    settings: object,
    ready_timeout_s: float,
    torch_threads: int | None,
    niceness: int,
) -> None:
    """Raise ValueError naming the first launcher setting outside its range (nothing started
    yet). TorchServe's own settings were checked when ``settings`` was made."""
    if not isinstance(settings, TorchServeSettings):
        raise TypeError(f"settings must be a TorchServeSettings, got {type(settings).__name__}")
    ranges: list[tuple[str, float | None, float, float]] = [
        ("ready_timeout_s", ready_timeout_s, 1, 86_400),
        ("torch_threads", torch_threads, 1, 1024),
        ("niceness", niceness, 0, 19),
    ]
    for name, value, lo, hi in ranges:
        if value is None and name == "torch_threads":
            continue  # None = the handler's default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not lo <= value <= hi:  # False for NaN too
            raise ValueError(f"{name} = {value!r} is out of range ({lo:g}..{hi:g})")


def render_config(template: Path, overrides: dict[str, str]) -> str:
    """config.properties text: the template's keys with ``overrides`` replacing or added."""
    lines: list[str] = []
    seen: set[str] = set()
    for line in template.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if line.strip() and not line.lstrip().startswith("#") and key in overrides:
            lines.append(f"{key}={overrides[key]}")
            seen.add(key)
        else:
            lines.append(line)
    lines += [f"{k}={v}" for k, v in overrides.items() if k not in seen]
    return "\n".join(lines) + "\n"


def _torchserve_bin() -> str:
    # The launcher next to this interpreter: TorchServe's workers use the same environment.
    candidate = Path(sys.executable).with_name("torchserve")
    return str(candidate) if candidate.exists() else "torchserve"


class LocalTorchServe:
    """TorchServe as a local, isolated process; a context manager (start + wait_ready / stop)."""

    def __init__(
        self,
        model_store: str | os.PathLike[str] = "build/model-store",
        settings: TorchServeSettings | None = None,
        *,
        run_dir: str | os.PathLike[str] | None = None,
        torch_threads: int | None = None,
        ready_timeout_s: float = 120.0,
        config_overrides: Mapping[str, str] | None = None,
        keep_run_dir: bool = False,
        niceness: int = 0,
    ) -> None:
        """``settings``: what TorchServe runs (default: ``TorchServeSettings()``, validated
        there); ``config_overrides``: further config.properties keys. ValueError naming a
        launcher setting out of range, before anything starts."""
        settings = TorchServeSettings() if settings is None else settings
        _check_launcher(
            settings=settings,
            ready_timeout_s=ready_timeout_s,
            torch_threads=torch_threads,
            niceness=niceness,
        )
        self.model_store = Path(model_store).resolve()
        # Every version registered here runs with these; model_version below is the one
        # served now (a reload changes it, never the settings).
        self.settings = settings
        self.model_version = settings.model_version
        self.torch_threads = torch_threads
        self.ready_timeout_s = ready_timeout_s
        self.config_overrides = dict(config_overrides or {})
        self._owns_run_dir = run_dir is None
        self._keep_run_dir = keep_run_dir
        # > 0: Java and its workers (which inherit it) yield the CPU to a load generator on the
        # same machine, from their first instruction on (start-up is the heaviest part).
        self.niceness = niceness
        # Made now, not lazily: callers read paths (key_file) from other threads while start()
        # runs, and two lazy mkdtemp() calls racing gave them different directories.
        self._run_dir: Path | None = (
            Path(run_dir).resolve() if run_dir else Path(tempfile.mkdtemp(prefix="torchserve-run-"))
        )
        self.ports = {
            name: free_port()
            for name in ("inference", "management", "metrics", "grpc_inference", "grpc_mgmt")
        }
        self._pid: int | None = None
        self._pgid: int | None = None
        self._guarded: set[int] = set()  # process groups the lifeline stops if we die
        # One client for the instance's life: it renews the management key as it expires.
        self.management = ManagementClient(self.management_url, self.key_doc)
        self._log_offset = 0  # where the current start's output begins in torchserve.out

    @property
    def token_auth(self) -> bool:
        """Whether TorchServe's token authorization is on (``settings.token_auth``)."""
        return self.settings.token_auth

    # ----- paths and addresses -------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """The run directory (a fresh temp dir unless one was given; made again after stop)."""
        if self._run_dir is None:
            self._run_dir = Path(tempfile.mkdtemp(prefix="torchserve-run-"))
        return self._run_dir

    @property
    def log_dir(self) -> Path:
        """Directory holding torchserve.out (Java and worker output) and TorchServe's logs."""
        return self.run_dir / "logs"

    @property
    def work_dir(self) -> Path:
        """TorchServe's working directory; holds key_file.json."""
        return self.run_dir / "work"

    @property
    def tmp_dir(self) -> Path:
        """TMPDIR/TEMP of the instance: pid file, worker sockets, extracted archives."""
        return self.run_dir / "tmp"

    @property
    def stdout_path(self) -> Path:
        """File receiving the stdout/stderr of TorchServe for its whole life."""
        return self.log_dir / "torchserve.out"

    @property
    def key_file(self) -> Path:
        """TorchServe's key_file.json (exists only with token auth on)."""
        return self.work_dir / "key_file.json"

    @property
    def inference_url(self) -> str:
        """Base URL of the inference API."""
        return f"http://127.0.0.1:{self.ports['inference']}"

    @property
    def management_url(self) -> str:
        """Base URL of the management API (loopback only)."""
        return f"http://127.0.0.1:{self.ports['management']}"

    @property
    def metrics_url(self) -> str:
        """URL of the Prometheus metrics endpoint."""
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    @property
    def pid(self) -> int | None:
        """PID of the Java frontend, None when not started."""
        return self._pid

    def key_doc(self) -> dict[str, Any] | None:
        """key_file.json as TorchServe wrote it last (None: auth off, not written, half written).

        Read at every call: TorchServe rewrites it whenever a key is renewed (by the management
        client here or by the backend).
        """
        if not self.token_auth:
            return None
        try:
            return read_key_file_text(self.key_file.read_bytes())
        except OSError:
            return None

    @property
    def keys(self) -> dict[str, str]:
        """``{"inference": ..., "management": ..., "API": ...}``; empty with token auth off."""
        parsed = parse_key_file(self.key_doc())
        if parsed is None:
            return {}
        entries = {
            "inference": parsed.inference,
            "management": parsed.management,
            "API": parsed.api,
        }
        return {name: entry.key for name, entry in entries.items() if entry is not None}

    def auth_headers(self, api: str = "inference") -> dict[str, str]:
        """The Authorization header for ``api`` ("inference" or "management")."""
        key = self.keys.get(api)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def worker_pids(self) -> list[int]:
        """PIDs of the Python workers (children of the Java frontend)."""
        if self._pid is None:
            return []
        try:
            return [p.pid for p in psutil.Process(self._pid).children(recursive=True)]
        except psutil.Error:
            return []

    def is_alive(self) -> bool:
        """Whether the Java frontend process is running."""
        return self._pid is not None and _alive(self._pid)

    def _log_since_start(self) -> str:
        try:
            with self.stdout_path.open("rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, nbytes: int = LOG_TAIL_BYTES) -> str:
        """The last ``nbytes`` of TorchServe's stdout file."""
        try:
            with self.stdout_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - nbytes))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ----- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> LocalTorchServe:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        tmp = str(self.tmp_dir)
        env.update(
            TMPDIR=tmp,
            TEMP=tmp,
            LOG_LOCATION=str(self.log_dir),
            METRICS_LOCATION=str(self.log_dir),
        )
        if self.torch_threads:
            env["SIGNFLOW_TORCH_THREADS"] = str(self.torch_threads)
        # Workers must not spread intra-op threads over every core: they share them.
        env.setdefault("OMP_NUM_THREADS", str(self.torch_threads or 1))
        return env

    def _config_text(self) -> str:
        ports = self.ports
        overrides = {
            "inference_address": f"http://127.0.0.1:{ports['inference']}",
            "management_address": f"http://127.0.0.1:{ports['management']}",
            "metrics_address": f"http://127.0.0.1:{ports['metrics']}",
            "grpc_inference_port": str(ports["grpc_inference"]),
            "grpc_management_port": str(ports["grpc_mgmt"]),
            **self.settings.properties(),
            "metrics_config": str(METRICS_CONFIG),
            **self.config_overrides,
        }
        return render_config(CONFIG_TEMPLATE, overrides)

    def _mar_name(self, version: str) -> str:
        return f"{MODEL_NAME}-{version}.mar"

    def start(self) -> None:
        """Launch TorchServe (returns once Java is spawned; call wait_ready next)."""
        if self.is_alive():
            raise TorchServeError(f"TorchServe already running (pid {self._pid})")
        mar = self.model_store / self._mar_name(self.model_version)
        if not mar.is_file():
            raise TorchServeError(f"{mar}: archive missing (build it with serving.package_model)")
        for d in (self.log_dir, self.work_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._wait_ports_free(timeout_s=15.0)
        # A killed instance leaves its pid file and key file behind: never reuse either.
        (self.tmp_dir / ".model_server.pid").unlink(missing_ok=True)
        self.key_file.unlink(missing_ok=True)
        config = self.run_dir / "config.properties"
        config.write_text(self._config_text())
        self._log_offset = self.stdout_path.stat().st_size if self.stdout_path.exists() else 0
        cmd = [
            _torchserve_bin(),
            "--start",
            "--ncs",
            "--model-store",
            str(self.model_store),
            "--ts-config",
            str(config),
            "--log-config",
            str(LOG4J_CONFIG),
            # The harness registers/unregisters versions; management stays on loopback.
            "--enable-model-api",
        ]
        if not self.token_auth:
            cmd.append("--disable-token-auth")
        if self.niceness > 0:
            cmd = ["nice", "-n", str(self.niceness), *cmd]
        with self.stdout_path.open("ab") as out:
            # Own session: Java and its workers form one process group we can kill as a whole.
            launcher = subprocess.Popen(
                cmd,
                cwd=self.work_dir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            # Guarded before Java exists: if this process dies from here on, the lifeline's
            # watchdog stops the whole group (the launcher daemonizes Java into it).
            self._guard(launcher.pid)
            try:
                returncode = launcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                launcher.kill()
                returncode = launcher.wait()
        pid_file = self.tmp_dir / ".model_server.pid"
        if returncode != 0 or not pid_file.is_file():
            raise TorchServeError(
                f"torchserve --start failed (exit {returncode}); log tail:\n{self.log_tail()}"
            )
        self._pid = int(pid_file.read_text().split()[0])
        try:
            self._pgid = os.getpgid(self._pid)
        except ProcessLookupError:
            self._pgid = None

    def wait_ready(self, timeout_s: float | None = None) -> float:
        """Block until the default version's workers are READY; returns the seconds waited.

        Polls the management API (``/ping`` says Healthy before the model can answer) and
        fails fast, with the log tail, when the Java process dies or the deadline passes.
        """
        start = time.monotonic()
        deadline = start + (timeout_s or self.ready_timeout_s)
        last = "no answer yet"
        registered = False
        while True:
            failures = self._log_since_start().count("Load model failed")
            if failures >= 2:  # TorchServe retries forever with back-off: do not wait for it
                raise TorchServeError(
                    f"the model's workers fail to load ({failures} failures); log tail:\n"
                    f"{self.log_tail()}"
                )
            if not self.is_alive():
                raise TorchServeError(
                    f"TorchServe (pid {self._pid}) died while starting; log tail:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TorchServeError(
                    f"TorchServe not ready after {timeout_s or self.ready_timeout_s:.0f} s "
                    f"({last}); log tail:\n{self.log_tail()}"
                )
            if self.token_auth and not self.key_file.is_file():
                time.sleep(0.1)
                continue
            try:
                if not registered:
                    listing = self._request("GET", "/models", timeout_s=2.0) or {}
                    names = {m.get("modelName") for m in listing.get("models", [])}
                    if MODEL_NAME not in names:
                        # Registered here rather than with --models at start: start-up loading
                        # takes the archive's batch settings, and changing them afterwards
                        # meant loading the model twice (twice the restart time).
                        self.register(self.model_version)
                    registered = True
                desc = self._request("GET", f"/models/{MODEL_NAME}", timeout_s=2.0)
                workers = desc[0].get("workers", []) if desc else []
                ready = [w for w in workers if w.get("status") == "READY"]
                last = f"{len(ready)}/{len(workers)} workers READY"
                if workers and len(ready) == len(workers):
                    break
            except (TorchServeError, OSError, ValueError) as exc:
                last = str(exc)[:200]
            time.sleep(0.2)
        return time.monotonic() - start

    def stop(self) -> None:
        """Stop TorchServe and every worker, then remove the temp dirs. Safe to call twice."""
        if self._pid is not None:
            pids = [self._pid, *self.worker_pids()]
            if _alive(self._pid):
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(
                        [_torchserve_bin(), "--stop"],
                        cwd=self.work_dir,
                        env=self._env(),
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=30,
                        check=False,
                    )
                _wait_gone([self._pid], timeout_s=15.0)
            self._kill_all(pids)
            self._pid = None
        self._release_all()
        if self._run_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            if self._owns_run_dir and not self._keep_run_dir:
                shutil.rmtree(self._run_dir, ignore_errors=True)
                self._run_dir = None

    def kill(self) -> None:
        """SIGKILL the Java frontend only (fault injection); its workers exit by themselves.

        ``start()`` + ``wait_ready()`` then bring it back on the same ports.
        """
        if self._pid is None:
            return
        workers = self.worker_pids()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        _wait_gone([self._pid], timeout_s=10.0)
        # Orphan workers exit within ~2 s of losing Java; make sure, so ports and memory free up.
        if _wait_gone(workers, timeout_s=5.0):
            self._kill_all(workers)
        self._pid = None

    def _guard(self, pgid: int) -> None:
        """Have the lifeline stop group ``pgid`` if this process dies; groups of earlier starts
        that are empty now are let go (a group id is only reused once the group is empty)."""
        for old in [g for g in self._guarded if not group_alive(g)]:
            release_group(old)
            self._guarded.discard(old)
        guard_group(pgid)
        self._guarded.add(pgid)

    def _release_all(self) -> None:
        for pgid in self._guarded:
            release_group(pgid)
        self._guarded.clear()

    def _kill_all(self, pids: list[int]) -> None:
        # The group only while one of its known members lives: its id cannot be reused then.
        alive = [p for p in pids if _alive(p)]
        if alive and self._pgid is not None and self._pgid != os.getpgrp():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(pids, timeout_s=5.0)

    def _wait_ports_free(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            busy = [p for p in self.ports.values() if not port_is_free(p)]
            if not busy:
                return
            if time.monotonic() > deadline:
                raise TorchServeError(f"ports still in use after {timeout_s:.0f} s: {busy}")
            time.sleep(0.2)

    # ----- management API ------------------------------------------------------------------
    def _request(self, method: str, path: str, timeout_s: float = 30.0) -> Any:
        return self.management.request(method, path, timeout_s)

    def describe(self) -> list[dict[str, Any]]:
        """The management API's description of every registered version of the model."""
        return self.management.describe()

    def running_config(self) -> RunningConfig:
        """What TorchServe reports the default version runs with (not what was asked)."""
        return self.management.running_config()

    def register(self, version: str, workers: int | None = None) -> Any:
        """Register ``signflow-<version>.mar`` with this instance's batching settings."""
        settings = self.settings if workers is None else self.settings.replace(workers=workers)
        return self.management.register(self._mar_name(version), version, settings)

    def set_default(self, version: str) -> Any:
        """Make ``version`` the one ``/predictions/signflow`` serves."""
        return self.management.set_default(version)

    def unregister(self, version: str) -> Any:
        """Remove ``version`` (not the default one: TorchServe answers 403)."""
        return self.management.unregister(version)

    def drain_probe(self) -> DrainProbe:
        """A probe request (a zero window) to a given version, for ``ManagementClient.drain``."""
        from serving.request_parser import WINDOW_BYTES

        return predict_probe(self.inference_url, self.key_doc, bytes(WINDOW_BYTES))

    def reload(self, new_version: str, drain_timeout_s: float = DRAIN_TIMEOUT_S) -> dict[str, Any]:
        """Register ``new_version``, make it the default, drain the old one, unregister it.

        No request queued or in flight on the old version is lost (see
        ``ManagementClient.drain``). Returns the timings in seconds and the drain figures.
        """
        old = self.model_version
        try:
            result = self.management.reload(
                self._mar_name(new_version),
                old,
                new_version,
                self.settings,
                probe=self.drain_probe(),
                drain_timeout_s=drain_timeout_s,
            )
        except BaseException:
            # Whatever step failed, remember the version TorchServe now serves by default.
            with contextlib.suppress(Exception):
                self.model_version = self.running_config().version
            raise
        self.model_version = new_version
        return result


def _cli() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.local",
        description="Run TorchServe locally for SignFlow; prints one JSON line once the model "
        "is READY and runs until Ctrl-C or SIGTERM (sent to launcher_pid).",
        epilog="Exit codes: 0 stopped by Ctrl-C/SIGTERM after READY, 1 TorchServe failed or "
        "died, 2 bad arguments, 130 interrupted while starting.",
    )
    parser.add_argument("--model-version", default=TorchServeSettings().model_version)
    for field, option in CLI_OPTIONS.items():
        # Unset options stay None: the settings' own defaults apply.
        parser.add_argument(option, dest=field, type=arg_type(field), help=arg_help(field))
    parser.add_argument("--model-store", default="build/model-store")
    parser.add_argument("--run-dir", default=None, help="keep logs here (default: a temp dir)")
    parser.add_argument(
        "--no-token-auth", action="store_true", help="disable TorchServe token authorization"
    )
    return parser


def _hints(server: LocalTorchServe) -> str:
    """What to do next, for a person at the terminal (stderr: stdout stays one JSON line)."""
    lines = [f"serving.local: ready; stop with Ctrl-C or `kill {os.getpid()}` (launcher_pid)."]
    if server.token_auth:
        key = (
            f'KEY=$(python3 -c \'import json; print(json.load(open("{server.key_file}"))'
            f'["inference"]["key"])\')'
        )
        lines += [
            "Every endpoint needs the token, /ping included (without it: HTTP 400/401):",
            f"  {key}",
            f'  curl -H "Authorization: Bearer $KEY" {server.inference_url}/ping',
            'The management API takes the "management" key of the same file; the metrics '
            f"endpoint {server.metrics_url} takes none.",
        ]
    else:
        lines.append(f"Token auth is OFF: curl {server.inference_url}/ping")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: start TorchServe, print one JSON line when ready, stop on SIGINT/SIGTERM.

    Bad arguments (a number out of range, a missing archive) exit 2 at once, before anything
    starts.
    """
    parser = _cli()
    args = parser.parse_args(argv)
    try:
        settings = TorchServeSettings.build(
            {"model_version": "--model-version"},
            model_version=args.model_version,
            token_auth=not args.no_token_auth,
            **{f: getattr(args, f) for f in CLI_OPTIONS if getattr(args, f) is not None},
        )
    except ValueError as exc:
        parser.error(str(exc))
    mar = Path(args.model_store) / f"{MODEL_NAME}-{settings.model_version}.mar"
    if not mar.is_file():
        parser.error(
            f"--model-store/--model-version: {mar} does not exist (build it: make {mar}, "
            "or python -m serving.package_model --version VERSION)"
        )

    stop = threading.Event()
    ready = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if not ready.is_set():
            # Still starting: unwind through the context manager, which stops what started.
            raise KeyboardInterrupt(signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    server = LocalTorchServe(args.model_store, settings, run_dir=args.run_dir)
    try:
        with server:
            line = {
                "inference_url": server.inference_url,
                "management_url": server.management_url,
                "metrics_url": server.metrics_url,
                # Two processes: this launcher (signal it to stop everything) and TorchServe's
                # Java frontend (its Python workers are its children).
                "launcher_pid": os.getpid(),
                "frontend_pid": server.pid,
                "key_file": str(server.key_file) if server.token_auth else None,
            }
            print(json.dumps(line), flush=True)
            print(_hints(server), file=sys.stderr, flush=True)
            ready.set()
            while not stop.wait(1.0):
                if not server.is_alive():
                    print(f"TorchServe died; log tail:\n{server.log_tail()}", file=sys.stderr)
                    return 1
    except TorchServeError as exc:
        print(f"serving.local: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
