"""A real Prometheus server beside a local stack (``stack.prometheus.enabled``).

It scrapes the backend (job ``backend``) and every TorchServe replica's metrics port (job
``torchserve``) every ``scrape_interval_s`` and evaluates the project's rules
(``monitoring/rules/*.yml``: the per-cohort recording rules and the rollback alerts), so the
same series and the same alerts a production Prometheus would have exist during a harness run,
and ``harness judge --prometheus URL`` can read them.

The server is Debian's ``prometheus`` (2.42; ``scripts/ensure_prometheus.sh``), a plain process
on a free loopback port, with its configuration and its TSDB in ``<run_dir>/prometheus/``, and
stopped with the stack like every other process it started.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from .base import StackError
from .procs import ManagedProcess, free_port, wait_http_ok

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = REPO_ROOT / "monitoring" / "rules"
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0

# The recording rules (monitoring/rules/signflow.rules.yml) behind the design's success
# metrics, as (rule, what it is, needs TorchServe, needs a GPU): what a run's results link to
# (results.json ``prometheus.queries``). tests/harness/stack check each is a rule there.
SUCCESS_QUERIES: tuple[tuple[str, str, bool, bool], ...] = (
    ("route:signflow_frame_latency_seconds:p95_5m", "p95 frame latency per cohort (s)",
     False, False),
    ("route:signflow_inference_latency_seconds:p95_5m", "p95 inference latency per cohort (s)",
     False, False),
    ("route:signflow_frames:rate1m", "frames/s per cohort", False, False),
    ("route:signflow_inferences:rate1m", "inferences/s per cohort", False, False),
    ("route:signflow_errors:ratio_rate5m", "error replies per frame, per cohort", False, False),
    ("signflow:torchserve_cohort_fallback:ratio_rate5m",
     "fallback share of the TorchServe cohort's inferences", True, False),
    ("signflow:torchserve_up:min", "1 when every TorchServe target answered the scrape",
     True, False),
    ("signflow:torchserve_batch_size:mean_rate5m", "TorchServe batch size achieved (requests)",
     True, False),
    ("signflow:gpu_utilisation_percent:avg5m", "GPU utilisation (%)", True, True),
)  # fmt: skip


def stored_data_dir(run_dir: Path) -> Path:
    """Where a local stack's Prometheus keeps its TSDB in a run dir (``<run_dir>/prometheus/data``),
    the series ``harness judge --run`` serves again."""
    return run_dir / "prometheus" / "data"


def success_queries(torchserve: bool, gpu: bool) -> list[tuple[str, str]]:
    """(rule, what it is) of :data:`SUCCESS_QUERIES` that can hold data for a run with (or
    without) TorchServe and a GPU."""
    return [
        (rule, about)
        for rule, about, needs_ts, needs_gpu in SUCCESS_QUERIES
        if (torchserve or not needs_ts) and (gpu or not needs_gpu)
    ]


def scrape_config(
    backend_metrics_url: str,
    torchserve_metrics_urls: Sequence[str],
    *,
    scrape_interval_s: float,
    rule_files: Sequence[Path],
) -> dict[str, object]:
    """The ``prometheus.yml`` document: one job per component, the rules loaded.

    ``*_url``: full metrics URLs (``http://127.0.0.1:PORT/metrics``); the scrape and rule
    evaluation intervals are both ``scrape_interval_s`` (s), so a recording rule is as fresh
    as the series it reads.
    """
    interval = f"{max(1, round(scrape_interval_s * 1000))}ms"

    def job(name: str, urls: Sequence[str]) -> dict[str, object]:
        parts = [urlsplit(u) for u in urls]
        paths = {p.path or "/metrics" for p in parts}
        if len(paths) != 1:
            raise StackError(f"prometheus: {name} targets with different paths: {sorted(paths)}")
        return {
            "job_name": name,
            "metrics_path": paths.pop(),
            "static_configs": [{"targets": [p.netloc for p in parts]}],
        }

    jobs = [job("backend", [backend_metrics_url])]
    if torchserve_metrics_urls:
        jobs.append(job("torchserve", list(torchserve_metrics_urls)))
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": jobs,
    }


class LocalPrometheus:
    """One Prometheus process; ``start`` after the targets are known, ``stop`` always.

    ``url``: its HTTP API (``http://127.0.0.1:PORT``) once started. Raises StackError when
    the binary is missing or the server does not become ready (with its log tail).
    """

    def __init__(self, run_dir: Path, log_dir: Path, *, scrape_interval_s: float = 1.0) -> None:
        self.dir = stored_data_dir(run_dir).parent
        self.log_dir = log_dir
        self.scrape_interval_s = scrape_interval_s
        self.url: str | None = None
        self._proc: ManagedProcess | None = None

    def start(
        self, backend_metrics_url: str, torchserve_metrics_urls: Sequence[str], niceness: int
    ) -> float:
        """Write the configuration, start the server, wait until ``/-/ready`` and its first
        scrape of every target; returns the seconds that took."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise StackError(
                "stack.prometheus.enabled: the prometheus binary is not on PATH; install "
                "Debian's prometheus package (scripts/ensure_prometheus.sh, run by make)"
            )
        rules = sorted(RULES_DIR.glob("*.yml"))
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "prometheus.yml"
        doc = scrape_config(
            backend_metrics_url,
            torchserve_metrics_urls,
            scrape_interval_s=self.scrape_interval_s,
            rule_files=rules,
        )
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        waited = self._launch(binary, config, stored_data_dir(self.dir.parent), niceness)
        targets = 1 + len(torchserve_metrics_urls)
        return waited + self._wait_first_scrape(targets, READY_TIMEOUT_S)

    def _wait_first_scrape(self, targets: int, timeout_s: float) -> float:
        """Wait until every target was scraped once (``count(up) == targets``, healthy or
        not); returns the seconds waited. Prometheus 2.42 applies its scrape targets up to
        5 s after ``/-/ready`` (the scrape manager's fixed reload tick; measured 5.1-6.0 s):
        without this wait a run's first seconds have no series in Prometheus, and a judge
        reading it (``rollout.judge.source: prometheus``) starts blind. StackError after
        ``timeout_s``."""
        start = time.monotonic()
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                try:
                    body = client.get(
                        f"{self.url}/api/v1/query", params={"query": "count(up)"}
                    ).json()
                    result = body["data"]["result"]
                    if result and float(result[0]["value"][1]) >= targets:
                        return time.monotonic() - start
                except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
                    pass  # not answering yet: the deadline below decides
                if time.monotonic() - start > timeout_s:
                    raise StackError(
                        f"prometheus at {self.url} did not scrape its {targets} target(s) "
                        f"within {timeout_s:g} s"
                        + (f"\n{self._proc.tail()}" if self._proc is not None else "")
                    )
                time.sleep(0.1)

    def start_stored(self, data_dir: Path, niceness: int = 0) -> float:
        """Serve a stored TSDB again (a finished run's ``<run_dir>/prometheus/data``), scraping
        nothing, so its series can be queried (``harness judge --prometheus``) after the stack
        that filled it stopped. The data is copied first: the run's record stays as it was.
        Returns the seconds it took to become ready; StackError as :meth:`start`."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise StackError(
                "the prometheus binary is not on PATH; install Debian's prometheus package "
                "(scripts/ensure_prometheus.sh, run by make)"
            )
        if not data_dir.is_dir():
            raise StackError(f"{data_dir}: no Prometheus data here")
        self.dir.mkdir(parents=True, exist_ok=True)
        copy = self.dir / "data"
        shutil.copytree(data_dir, copy, ignore=shutil.ignore_patterns("lock"))
        config = self.dir / "prometheus.yml"
        config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1m"}}))
        return self._launch(binary, config, copy, niceness)

    def _launch(self, binary: str, config: Path, data: Path, niceness: int) -> float:
        port = free_port()
        self._proc = ManagedProcess(
            "prometheus",
            [
                "nice", "-n", str(niceness), binary,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={data}",
                "--log.level=warn",
            ],
            {"PATH": "/usr/bin:/bin"},
            self.dir,
            self.log_dir,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        waited = wait_http_ok(f"{url}/-/ready", self._proc, READY_TIMEOUT_S, "prometheus")
        self.url = url
        return waited

    def pids(self) -> list[int]:
        """The live server's pid (empty when not running)."""
        return self._proc.pids() if self._proc is not None else []

    def stop(self) -> None:
        """Stop the server (safe to call twice, or before ``start``)."""
        if self._proc is not None:
            self._proc.stop(STOP_GRACE_S)
