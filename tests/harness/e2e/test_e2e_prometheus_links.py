"""Issue 22 item 3's last piece: a run with ``stack.prometheus.enabled`` records its
Prometheus (results.json ``prometheus``: URL, stored data, a graph link per success-metric
recording rule over the run) and its report links them; each link's query returns the run's
series from the stored data served again by a real Prometheus. A real backend (no TorchServe:
the shortest real stack), a real Prometheus scraping it every second; ~20-30 s here.
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from test_e2e_cli import _no_leftovers, _results, _run

from harness.collectors.prometheus_api import PrometheusAPI
from harness.results.model import Results
from harness.stack.prometheus import LocalPrometheus, stored_data_dir, success_queries

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_run_records_and_reports_its_prometheus_queries(tmp_path: Path) -> None:
    code, output = _run(
        "baseline-quick.yaml", tmp_path / "out", "stack.prometheus.enabled=true",
        "workload.duration_s=8",
    )  # fmt: skip
    assert code == 0, output[-3000:]
    doc, run_dir = _results(tmp_path / "out", "baseline-quick")
    _no_leftovers(run_dir)
    rec = Results.model_validate(doc).prometheus
    assert rec is not None and rec.url.startswith("http://127.0.0.1:")
    assert rec.data_dir == str(stored_data_dir(run_dir)) and Path(rec.data_dir).is_dir()
    assert rec.end_unix_s - rec.start_unix_s >= 8
    # backend only, no GPU: the rules that can hold data here, in order, none of TorchServe's
    assert [q.expr for q in rec.queries] == [r for r, _ in success_queries(False, False)]
    for q in rec.queries:
        parts = urlsplit(q.link)
        assert f"{parts.scheme}://{parts.netloc}" == rec.url and parts.path == "/graph"
        assert parse_qs(parts.query)["g0.expr"] == [q.expr]

    html = (run_dir / "report.html").read_text()
    section = html.split('<section id="prometheus"', 1)[1].split("</section>", 1)[0]
    shown = [unescape(h) for h in re.findall(r'<a href="([^"]+)"><code>', section)]
    assert shown == [q.link for q in rec.queries]
    assert f"harness judge --run {run_dir}" in section

    # Each link's query, over the recorded interval, answers with the run's series from the
    # stored data served again (a copy: the run's record stays as it was).
    served = LocalPrometheus(tmp_path / "serve", tmp_path / "serve")
    try:
        served.start_stored(Path(rec.data_dir))
        assert served.url is not None
        with PrometheusAPI(served.url) as api:
            # the stack's Prometheus scraped before the load started (not 5 s into the run)
            up = api.range_query("up", rec.start_unix_s - 30, rec.end_unix_s, 1.0)
            assert up.series and min(up.series[0].t) <= rec.start_unix_s, up
            got = {}
            for q in rec.queries:
                expr = parse_qs(urlsplit(q.link).query)["g0.expr"][0]
                result = api.range_query(expr, rec.start_unix_s, rec.end_unix_s, 1.0)
                got[expr] = [v for s in result.series if s.labels.get("route") == "local"
                             for v in s.v if v == v]  # fmt: skip
    finally:
        served.stop()
    frames = got["route:signflow_frames:rate1m"]
    # > 0, not 120 (4 sessions at 30 frames/s): a 1-minute rate over a run of a few seconds
    # reads the frames over the whole minute.
    assert frames and max(frames) > 0, got
    p95 = got["route:signflow_frame_latency_seconds:p95_5m"]
    assert p95 and 0 < max(p95) < 1.0, got
    p95_inference = got["route:signflow_inference_latency_seconds:p95_5m"]
    assert p95_inference and 0 < max(p95_inference) < 1.0, got
    # (the error ratio has no series on a run without errors: the backend's error counter
    # is born at the first error, so every query is asked but not every one holds data)
