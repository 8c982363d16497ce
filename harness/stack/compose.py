"""The compose stack: backend + TorchServe containers from a docker compose file.

The compose CLI (v2 ``docker compose`` or v1 ``docker-compose``, whichever exists) brings the
project up and down under a project name unique to the run; everything else goes through the
Docker SDK: finding the project's containers by label, waiting for health, killing and starting
the TorchServe container, copying an archive into the model store, container logs.

Every host port is ephemeral (the compose file reads ``*_PORT`` variables, and an empty value
means "any free port on 127.0.0.1"), so two runs never clash, and the run's model store is a
directory of its own, so copying an archive into it never touches ``build/``.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

from harness.redact import mask
from harness.scenario.models import ComposeSpec, StackSpec
from serving.management import (
    ManagementClient,
    TorchServeError,
    predict_probe,
    read_key_file_text,
)

from .base import (
    DeferSigint,
    ReloadResult,
    ReplicaRunning,
    StackDescription,
    StackEndpoints,
    StackError,
    mask_secrets,
    put_rollout,
    require_spec,
    sha256_file,
    torchserve_provenance,
    verify_running,
)
from .local import REPO_ROOT

if TYPE_CHECKING:  # the Docker SDK has no type information: these read as Any to mypy
    from docker.client import DockerClient
    from docker.models.containers import Container

CONTAINER_MODEL_STORE = "/home/model-server/model-store"
CONTAINER_KEY_FILE = "/home/model-server/keys/key_file.json"
HEALTH_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 3
INSTALL_HINT = (
    "The compose driver needs a running Docker engine and a compose CLI. On Debian/Ubuntu: "
    "`apt-get install docker.io docker-compose` and start dockerd (`scripts/dockerd.sh start` "
    "does both on a machine without systemd); elsewhere install Docker Engine with the compose "
    "plugin. Then check `docker info`."
)


def detect_compose_cli() -> list[str]:
    """The compose command line to use: v2 plugin when present, else v1, else StackError."""
    candidates = (["docker", "compose"], ["docker-compose"])
    for argv in candidates:
        if shutil.which(argv[0]) is None:
            continue
        probe = subprocess.run([*argv, "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return argv
    raise StackError(
        f"no docker compose CLI found (tried `docker compose`, `docker-compose`). {INSTALL_HINT}"
    )


def docker_client() -> DockerClient:
    """A Docker SDK client that answered a ping, or StackError saying what to install."""
    try:
        import docker
    except ImportError as exc:
        raise StackError(f"the `docker` Python package is missing ({exc}). {INSTALL_HINT}") from exc
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # DockerException, connection refused, missing socket...
        raise StackError(
            f"no Docker engine answers ({type(exc).__name__}: {exc}). {INSTALL_HINT}"
        ) from exc
    return client


def strip_gpu_reservations(config: dict[str, Any]) -> dict[str, Any]:
    """Drop ``deploy.resources.reservations.devices`` from every service (CPU runs).

    Compose v1 cannot remove a key through an override file, so the driver edits the resolved
    configuration instead; it also removes the then-empty parents.
    """
    for service in (config.get("services") or {}).values():
        deploy = service.get("deploy") or {}
        reservations = (deploy.get("resources") or {}).get("reservations") or {}
        reservations.pop("devices", None)
        if not reservations:
            (deploy.get("resources") or {}).pop("reservations", None)
        if deploy.get("resources") == {}:
            deploy.pop("resources")
        if deploy == {} and "deploy" in service:
            service.pop("deploy")
    return config


class ComposeStack:
    """A compose project per run; the same interface as the local stack."""

    name = "compose"

    def __init__(
        self,
        spec: StackSpec,
        run_dir: Path,
        *,
        model_store: Path | None = None,
        models_dir: Path | None = None,
        health_timeout_s: float = HEALTH_TIMEOUT_S,
    ) -> None:
        self.spec = spec = require_spec(spec, "ComposeStack", "compose")
        # Absolute: compose reads a relative bind-mount source that does not start with "."
        # as the name of a volume (`--out reports/x` broke CI that way).
        self.run_dir = Path(run_dir).resolve()
        self.log_dir = self.run_dir / "logs"
        self.source_store = Path(model_store or REPO_ROOT / "build" / "model-store")
        self.models_dir = Path(models_dir or REPO_ROOT / "build" / "models")
        self.health_timeout_s = health_timeout_s
        compose = spec.compose or ComposeSpec()  # never None here: the model fills it for compose
        self.files = [self._resolve(compose.file or REPO_ROOT / "docker-compose.yml")]
        self.files += [self._resolve(f) for f in compose.overrides]
        # None = decide at start: a GPU reservation only where the engine has the NVIDIA runtime.
        self.gpu: bool | None = compose.gpu
        self.project = compose.project_name or f"signflow-{secrets.token_hex(4)}"
        self.use_torchserve = spec.use_torchserve
        self.rollout_percent = spec.rollout_percent
        # More than one only with token auth off (StackSpec's rule): each replica writes its
        # own key file into the one shared volume, and the backend can hold only one.
        self.replicas = spec.torchserve_replicas
        # The compose file's "monitoring" profile: its Prometheus service, with the rules.
        self.prometheus = spec.prometheus.enabled
        # What every TorchServe replica runs (the one settings type; the container's
        # registrar reads it back from the environment rendered by settings.env()).
        self.settings = spec.torchserve
        self.model_version = self.settings.model_version
        self.token_auth = self.settings.token_auth
        # The scenario's backend settings (stack.backend.env), as on the local stack; validation
        # already refuses the names a scenario key or the harness owns (USE_TORCHSERVE...).
        self.backend_env = dict(spec.backend.env)
        self._admin_token = secrets.token_urlsafe(24)
        self._current_version = self.model_version
        self._cli: list[str] = []
        self._client: Any = None
        self._resolved: Path = self.run_dir / "compose.resolved.yml"
        self._up = False
        self._timings: dict[str, float] = {}
        # Host ports are ephemeral and a restarted container gets new ones: resolved after
        # start-up, start_torchserve and reload_model, read (cheaply, from any thread) between.
        self._endpoints: StackEndpoints | None = None
        # What each replica's TorchServe reports it runs (GET /models/signflow), per check.
        self._running: list[ReplicaRunning] = []

    @staticmethod
    def _resolve(path: str | Path) -> Path:
        path = Path(path)
        if path.is_absolute() or path.exists():
            return path.resolve()
        return (REPO_ROOT / path).resolve()

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> ComposeStack:
        """Resolve the configuration, bring the project up, wait until every service is healthy."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._client = docker_client()
        self._cli = detect_compose_cli()
        if self.gpu is None:
            runtimes = (self._client.info().get("Runtimes") or {}).keys()
            self.gpu = "nvidia" in runtimes
        try:
            self._prepare_model_store()
            self._write_resolved_config()
            start = time.monotonic()
            self._compose(
                "up",
                "-d",
                "--build",
                "--no-color",
                "--scale",
                f"torchserve={self.replicas}",
                timeout=900,
            )
            self._up = True
            self._wait_healthy(self._containers())
            self._verify_running("start")
            self._resolve_endpoints()
            self._timings["stack_ready_s"] = time.monotonic() - start
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """Collect the logs, then remove the project's containers, network and volumes."""
        self._teardown()

    def _teardown(self) -> None:
        with DeferSigint():
            with contextlib.suppress(Exception):
                self.collect_logs(self.log_dir)
            if self._cli and self._resolved.exists():
                with contextlib.suppress(Exception):
                    self._compose(
                        "down", "-v", "--remove-orphans", "-t", str(STOP_TIMEOUT_S), timeout=120
                    )
            self._remove_leftovers()
            self._up = False
            self._endpoints = None
            # The resolved file is the run's record of what ran; once `down` no longer needs it,
            # keep that record without the values of secrets (the admin token, backend env).
            with contextlib.suppress(Exception):
                if self._resolved.exists():
                    doc = yaml.safe_load(self._resolved.read_text())
                    self._resolved.write_text(yaml.safe_dump(mask(doc), sort_keys=False))

    def _remove_leftovers(self) -> None:
        """Whatever `down` missed (a crashed CLI, a Ctrl-C): remove it by label."""
        if self._client is None:
            return
        label = f"com.docker.compose.project={self.project}"
        for container in self._client.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
        for network in self._client.networks.list(filters={"label": label}):
            with contextlib.suppress(Exception):
                network.remove()
        for volume in self._client.volumes.list(filters={"label": label}):
            with contextlib.suppress(Exception):
                volume.remove(force=True)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "COMPOSE_PROJECT_NAME": self.project,
                "USE_TORCHSERVE": "true" if self.use_torchserve else "false",
                "TORCHSERVE_ROLLOUT_PERCENT": str(self.rollout_percent),
                # MODEL_VERSION, TS_TOKEN_AUTH and the SIGNFLOW_* batching: the container's
                # registrar applies them through the management API.
                **self.settings.env(),
                "SIGNFLOW_NUMBER_OF_GPU": "1" if self.gpu else "0",
                "SIGNFLOW_MODEL_STORE": str(self.run_dir / "model-store"),
                "SIGNFLOW_ADMIN_TOKEN": self._admin_token,
                "TORCHSERVE_URLS": self._replica_urls(),
                # Empty = an ephemeral host port on 127.0.0.1: parallel runs never clash.
                "BACKEND_PORT": "",
                "TORCHSERVE_INFERENCE_PORT": "",
                "TORCHSERVE_MANAGEMENT_PORT": "",
                "TORCHSERVE_METRICS_PORT": "",
                "PROMETHEUS_PORT": "",
            }
        )
        return env

    def _replica_urls(self) -> str:
        """Inference URLs the backend spreads its requests over (one per replica).

        With one replica the service name is enough. With several, each replica is addressed
        by its container name (resolvable on the project network): the service name alone would
        pin the backend's pooled connections to whichever address DNS gave first.
        """
        if self.replicas == 1:
            return "http://torchserve:8080"
        v1 = self._cli == ["docker-compose"]
        names = [
            f"{self.project}_torchserve_{i}" if v1 else f"{self.project}-torchserve-{i}"
            for i in range(1, self.replicas + 1)
        ]
        return ",".join(f"http://{name}:8080" for name in names)

    def _compose(self, *args: str, timeout: float = 300, files: list[Path] | None = None) -> str:
        argv = [*self._cli, "-p", self.project]
        if self.prometheus:
            argv += ["--profile", "monitoring"]
        for path in files or [self._resolved]:
            argv += ["-f", str(path)]
        argv += list(args)
        with open(self.log_dir / "compose-cli.log", "a") as log:
            log.write(f"$ {' '.join(argv[len(self._cli) :])}\n")
            try:
                proc = subprocess.run(
                    argv,
                    env=self._env(),
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    cwd=REPO_ROOT,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise StackError(f"`{' '.join(argv)}` timed out after {timeout:.0f} s") from exc
            log.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise StackError(f"compose {args[0]} failed (exit {proc.returncode}):\n{tail}")
        return proc.stdout

    def _prepare_model_store(self) -> None:
        store = self.run_dir / "model-store"
        store.mkdir(parents=True, exist_ok=True)
        archive = self.source_store / f"signflow-{self.model_version}.mar"
        if not archive.is_file():
            raise StackError(
                f"stack.torchserve.model_version: archive {archive} not found; "
                "build it with `make setup`"
            )
        shutil.copy2(archive, store / archive.name)
        os.chmod(store, 0o777)  # the container's model-server user must be able to write

    def _write_resolved_config(self) -> None:
        """`compose config` of the files, minus GPU reservations on CPU runs, for `up`/`down`.

        The resolved file is also the run's record of exactly what was started.
        """
        text = self._compose("config", files=self.files)
        config = yaml.safe_load(text)
        if not self.gpu:
            config = strip_gpu_reservations(config)
        if self.backend_env:
            backend = config.get("services", {}).get("backend")
            if backend is None:
                raise StackError("stack.backend.env: the compose files define no `backend` service")
            environment = backend.get("environment") or {}
            if isinstance(environment, list):  # `KEY=value` items: compose accepts both forms
                environment = dict(item.split("=", 1) for item in environment)
            backend["environment"] = {**environment, **self.backend_env}
        self._resolved.write_text(yaml.safe_dump(config, sort_keys=False))

    # ---- containers ------------------------------------------------------------------------

    def _containers(self, service: str | None = None) -> list[Container]:
        filters = {"label": [f"com.docker.compose.project={self.project}"]}
        if service:
            filters["label"].append(f"com.docker.compose.service={service}")
        return sorted(self._client.containers.list(all=True, filters=filters), key=lambda c: c.name)

    def _wait_healthy(self, containers: list[Container]) -> None:
        deadline = time.monotonic() + self.health_timeout_s
        pending = {c.id: c for c in containers}
        while pending:
            for cid, container in list(pending.items()):
                container.reload()
                state = container.attrs["State"]
                health = (state.get("Health") or {}).get("Status")
                if health == "healthy" or (health is None and state.get("Running")):
                    del pending[cid]
                elif state.get("Status") in ("exited", "dead"):
                    raise StackError(
                        f"container {container.name} exited (status {state.get('ExitCode')}) "
                        f"before it was healthy:\n{self._log_tail(container)}"
                    )
            if pending and time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending.values())
                raise StackError(
                    f"not healthy after {self.health_timeout_s:.0f} s: {names}\n"
                    + "\n".join(self._log_tail(c) for c in pending.values())
                )
            if pending:
                time.sleep(0.5)

    @staticmethod
    def _log_tail(container: Container, lines: int = 30) -> str:
        with contextlib.suppress(Exception):
            text = container.logs(tail=lines).decode(errors="replace")
            return f"--- {container.name} (last {lines} lines) ---\n{text}"
        return f"--- {container.name}: no logs ---"

    def _host_port(self, service: str, port: int) -> int:
        return self._published_port(self._containers(service)[0], port)

    @staticmethod
    def _published_port(container: Container, port: int) -> int:
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
        if not bindings:
            raise StackError(f"{container.name}: port {port} is not published")
        return int(bindings[0]["HostPort"])

    # ---- the Stack interface ---------------------------------------------------------------

    @property
    def endpoints(self) -> StackEndpoints:
        """Host URLs of the backend and of the first TorchServe replica (metrics: every one).

        Resolved again after ``start_torchserve`` and ``reload_model`` (a restarted container
        gets new ephemeral host ports); collectors that read this property on each scrape
        follow the restart.
        """
        if not self._up or self._endpoints is None:
            raise StackError("the stack is not started")
        return self._endpoints

    def _resolve_endpoints(self) -> StackEndpoints:
        backend = f"http://127.0.0.1:{self._host_port('backend', 8000)}"
        ts = {p: f"http://127.0.0.1:{self._host_port('torchserve', p)}" for p in (8080, 8081, 8082)}
        metrics = tuple(
            f"http://127.0.0.1:{self._published_port(c, 8082)}/metrics"
            for c in self._containers("torchserve")
        )
        self._endpoints = StackEndpoints(
            torchserve_metrics_urls=metrics,
            ws_url=backend.replace("http://", "ws://") + "/api/v1/translate/stream",
            http_url=backend,
            backend_metrics_url=f"{backend}/metrics",
            torchserve_metrics_url=f"{ts[8082]}/metrics",
            torchserve_management_url=ts[8081],
            torchserve_inference_url=ts[8080],
            prometheus_url=(
                f"http://127.0.0.1:{self._host_port('prometheus', 9090)}"
                if self.prometheus
                else None
            ),
        )
        return self._endpoints

    def processes(self) -> dict[str, list[int]]:
        """Host pids of each service's containers (their main process; sampling adds children)."""
        result: dict[str, list[int]] = {}
        for container in self._containers():
            container.reload()
            service = container.labels.get("com.docker.compose.service", container.name)
            pid = int(container.attrs["State"].get("Pid") or 0)
            result.setdefault(service, [])
            if pid:
                result[service].append(pid)
        return result

    def kill_torchserve(self) -> None:
        """SIGKILL every TorchServe container (the process is the container's main process)."""
        for container in self._containers("torchserve"):
            container.kill()

    def start_torchserve(self) -> None:
        """Start the TorchServe containers again; return once healthy (model READY).

        The container registers its configured version; a reloaded one is brought back, the
        running configuration is checked again and the endpoints re-resolved (new host ports).
        """
        containers = self._containers("torchserve")
        start = time.monotonic()
        for container in containers:
            container.start()
        self._wait_healthy(containers)
        if self._current_version != self.model_version:
            # The container starts with its configured version; bring back the reloaded one.
            for container in containers:
                self._reload_in(container, self._current_version, self.model_version)
        self._verify_running("start_torchserve")
        self._resolve_endpoints()
        self._timings["torchserve_restart_s"] = time.monotonic() - start

    def reload_model(self, version: str) -> ReloadResult:
        """Copy the new archive into each replica's model store, then the shared hot reload
        (register, set default, drain the old version, unregister it: no request lost)."""
        version = str(version)
        old = self._current_version
        start = time.monotonic()
        per_replica = [self._reload_in(c, version, old) for c in self._containers("torchserve")]
        total = time.monotonic() - start
        self._current_version = version
        self._verify_running("reload_model")
        self._resolve_endpoints()
        # The first replica's steps follow; the stack's own versions and total win over its.
        result = ReloadResult(from_version=old, to_version=version, total_s=total)
        result.update({**per_replica[0], **result})
        if len(per_replica) > 1:
            result["replicas"] = per_replica
        return result

    def _management(self, container: Container) -> ManagementClient:
        """The management client of one replica (its own host port, its own key file)."""
        port = self._published_port(container, 8081)
        reader = (lambda: self._key_doc(container)) if self.token_auth else None
        return ManagementClient(f"http://127.0.0.1:{port}", reader)

    def _reload_in(self, container: Container, version: str, old: str) -> ReloadResult:
        archive = self.source_store / f"signflow-{version}.mar"
        if not archive.is_file():
            raise StackError(f"reload_model: archive {archive} not found")
        copy_start = time.monotonic()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(archive, arcname=archive.name)
        if not container.put_archive(CONTAINER_MODEL_STORE, buffer.getvalue()):
            raise StackError(f"reload_model: could not copy {archive.name} into {container.name}")
        copy_s = time.monotonic() - copy_start
        from serving.request_parser import WINDOW_BYTES

        inference = f"http://127.0.0.1:{self._published_port(container, 8080)}"
        reader = (lambda: self._key_doc(container)) if self.token_auth else None
        try:
            # ManagementClient.reload's timings: a plain dict (serving/ cannot import the
            # harness's ReloadResult), named here.
            result = self._management(container).reload(
                archive.name,
                old,
                version,
                self.settings,
                probe=predict_probe(inference, reader, bytes(WINDOW_BYTES)),
            )
        except (TorchServeError, OSError) as exc:
            raise StackError(f"reload_model in {container.name}: {exc}") from exc
        return cast(ReloadResult, {"copy_s": copy_s, **result})

    def _key_doc(self, container: Container) -> dict[str, Any] | None:
        """The replica's key_file.json now (TorchServe rewrites it on each renewal)."""
        result = container.exec_run(["cat", CONTAINER_KEY_FILE])
        return read_key_file_text(result.output) if result.exit_code == 0 else None

    def _verify_running(self, when: str) -> None:
        """Read what every replica runs; StackError naming each field that differs."""
        self._running = []
        for i, container in enumerate(self._containers("torchserve")):
            name = f"torchserve-{i + 1}" if self.replicas > 1 else "torchserve"
            running = verify_running(
                name, self._management(container), self._current_version, self.settings
            )
            self._running.append(ReplicaRunning(replica=name, checked_after=when, **running))

    def set_rollout(self, percent: int) -> None:
        """Change the share of new sessions sent to TorchServe (backend PUT /admin/rollout)."""
        self.rollout_percent = put_rollout(self.endpoints.http_url, self._admin_token, percent)

    def describe(self) -> StackDescription:
        """Compose files, project, images and archive hashes for provenance. No secrets."""
        images: dict[str, str] = {}
        with contextlib.suppress(Exception):
            for container in self._containers():
                images[container.name] = container.image.id
        store = self.run_dir / "model-store"
        return {
            "driver": self.name,
            "compose_cli": " ".join(self._cli),
            "project": self.project,
            "files": [str(f) for f in self.files],
            "resolved_config": str(self._resolved),
            "gpu": self.gpu,
            "use_torchserve": self.use_torchserve,
            "rollout_percent": self.rollout_percent,
            "torchserve_replicas": self.replicas,
            "torchserve": {
                **torchserve_provenance(self.settings, self._current_version),
                # What each TorchServe REPORTED it runs at the last check (not what was asked).
                "running": list(self._running),
            },
            "images": images,
            "model_archives": {p.name: sha256_file(p) for p in sorted(store.glob("*.mar"))},
            "env": mask_secrets(
                {
                    k: v
                    for k, v in self._env().items()
                    if k.startswith(("TS_TOKEN", "TORCHSERVE_", "USE_", "MODEL_", "SIGNFLOW_"))
                }
            ),
            "startup_s": dict(self._timings),
        }

    def collect_logs(self, dest: Path) -> None:
        """Each container's logs into ``dest/<container>.log``."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        if self._client is None:
            return
        for container in self._containers():
            with contextlib.suppress(Exception):
                (dest / f"{container.name}.log").write_bytes(container.logs(timestamps=True))
