"""The report as HTML: verdict, gates, summary, figures with alt text, self-contained, robust."""

from __future__ import annotations

import base64
import copy
import io
import json
import stat

import pytest
from html_inspect import inspect
from PIL import Image
from report_cases import CASES, FIXTURES, Built, load_fixture

from harness.report import build_context, build_report, render_html
from harness.report import figures as F

CASE_NAMES = [c.name for c in CASES]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_report_has_verdict_gates_and_every_expected_figure(
    built_reports: dict[str, Built], name: str
) -> None:
    built = built_reports[name]
    facts = inspect(built.html)
    results = built.results

    assert facts.verdict == results["verdict"]
    assert results["verdict"].upper() in facts.verdict_text
    # One gates-table row per gate, with the expression, the measured value and the outcome.
    rows = [r for r in facts.gate_rows if r and r[0] != "Gate expression"]
    assert len(rows) == len(results["gates"])
    for row, gate in zip(rows, results["gates"], strict=True):
        assert row[0] == gate["expr"]
        assert ("PASS" if gate["passed"] else "FAIL") in row[3]
    # Every expected figure, once, as an embedded PNG with alt text that says what it shows.
    assert sorted(facts.figures) == sorted(built.case.figures)
    assert len(facts.images) == len(built.case.figures)
    for img in facts.images:
        assert img["src"].startswith("data:image/png;base64,")
        assert len(img.get("alt", "")) > 60, img.get("alt")
        png = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
        assert png.width >= 800
    # Real structure: one h1, sections as h2, every th has a scope.
    assert [t for t, _ in facts.headings].count("h1") == 1
    assert {"Gates", "Latency", "Faults and reloads"} <= {t for h, t in facts.headings}
    assert facts.th_without_scope == 0


@pytest.mark.parametrize("name", CASE_NAMES)
def test_report_is_self_contained(built_reports: dict[str, Built], name: str) -> None:
    built = built_reports[name]
    facts = inspect(built.html)
    assert facts.remote_refs == []
    assert "script" not in facts.tags
    assert not {"link", "iframe", "object", "embed", "frame"} & set(facts.tags)
    # Written next to the results it describes, readable by others like results.json.
    assert built.html_path.parent == (built.html_path.parent / "results.json").parent
    assert (built.html_path.parent / "results.json").exists()
    assert built.html_path.stat().st_mode & stat.S_IROTH
    assert not list(built.html_path.parent.glob(".report-*"))


def test_fallback_kill_report_shows_the_outage(built_reports: dict[str, Built]) -> None:
    facts = inspect(built_reports["fallback-kill"].html)
    fault = built_reports["fallback-kill"].results["faults"][0]
    assert "TorchServe outage 1" in facts.text
    assert "First fallback answer: its wait" in facts.text
    assert f"{fault['time_to_recover_s']:.2f} s" in facts.text
    assert f"{fault['outage_latency_ms']['p99']:.1f} ms" in facts.text
    img = next(i for i in facts.images if "frame latency percentiles" in i["alt"])
    assert "kill TorchServe at 15.0 s" in img["alt"]
    assert "outage window shaded" in img["alt"]
    # No GPU here: said in words, no GPU figure drawn as zero.
    assert "No GPU in this run" in facts.text
    assert "gpu-over-time" not in facts.figures


def test_hot_reload_report_shows_the_switch(built_reports: dict[str, Built]) -> None:
    facts = inspect(built_reports["hot-reload"].html)
    assert "Model reload 1: 1.0 → 2.0" in facts.text
    assert "Mixed-version window" in facts.text
    assert "p99 around the switch" in facts.text
    served = next(i for i in facts.images if "served by TorchServe" in i["alt"])
    assert "model version" in served["alt"]
    assert "mixed versions window shaded" in served["alt"]


def test_gpu_report_draws_gpu_and_baseline_comparison(built_reports: dict[str, Built]) -> None:
    built = built_reports["gpu"]
    facts = inspect(built.html)
    assert "gpu-over-time" in facts.figures
    assert "NVIDIA H100" in facts.text
    assert "Environments differ" in facts.text
    # Summary rows carry the comparison's statistical verdicts.
    verdicts = {m["metric"]: m["verdict"] for m in built.results["comparison"]["metrics"]}
    assert verdicts["frame.latency_ms.p95"] in facts.text


def test_baseline_report_says_no_baseline_and_no_torchserve(
    built_reports: dict[str, Built],
) -> None:
    facts = inspect(built_reports["baseline"].html)
    assert "No baseline" in facts.text
    assert "TorchServe was not in this stack" in facts.text
    assert "No timeline events" in facts.text


def test_summary_table_relative_change_and_verdicts() -> None:
    run = load_fixture("synthetic-fallback-kill.results.json")
    base = load_fixture("synthetic-baseline.results.json")
    for doc in (run, base):  # the table does not depend on series; skip the slow figures
        doc["series"] = doc["histograms"] = None
    ctx = build_context(run, base)
    rows = {r["metric"]: r for g in ctx["summary_groups"] for r in g["rows"]}
    for metric in (
        "frame.latency_ms.p999",
        "inference.latency_ms.p99",
        "throughput.inferences_per_s",
        "served_by.torchserve",
        "gpu.util_mean",
        "cpu.backend.mean_percent",
        "accuracy",
        "errors.total",
    ):
        assert metric in rows, metric
    cmp = next(m for m in run["comparison"]["metrics"] if m["metric"] == "frame.latency_ms.p95")
    assert rows["frame.latency_ms.p95"]["verdict"] == cmp["verdict"]
    assert rows["frame.latency_ms.p95"]["change"] == f"{cmp['change'] * 100:+.1f} %"
    assert rows["gpu.util_mean"]["run"] == "no GPU"

    # Results without a statistical comparison, against a baseline: the comparison is made
    # afresh (never a verdict from elsewhere); without per-window data it cannot decide.
    no_stats = copy.deepcopy(run)
    no_stats["comparison"] = None
    rows = {
        r["metric"]: r for g in build_context(no_stats, base)["summary_groups"] for r in g["rows"]
    }
    p95, b95 = (d["summary"]["frame"]["latency_ms"]["p95"] for d in (run, base))
    assert rows["frame.latency_ms.p95"]["change"] == f"{(p95 - b95) / b95 * 100:+.1f} %"
    assert rows["frame.latency_ms.p95"]["verdict"] == "too little data"
    assert "n = 0 windows" in rows["frame.latency_ms.p95"]["note"]


def test_invalid_run_says_invalid_and_why(tmp_path) -> None:
    doc = load_fixture("synthetic-fallback-kill.results.json")
    doc["valid"] = False
    doc["verdict"] = "invalid"
    doc["invalid_reasons"] = ["generator fell behind: 3.2% of frames sent > 5 ms late"]
    doc["series"] = doc["histograms"] = None  # figures are tested elsewhere; keep this fast
    facts = inspect(build_report(doc, None, tmp_path / "report.html").read_text())
    assert facts.verdict == "invalid"
    assert "INVALID" in facts.verdict_text
    assert "generator fell behind: 3.2%" in facts.verdict_text


def test_interrupted_run_says_so_and_what_it_covers() -> None:
    doc = load_fixture("synthetic-fallback-kill.results.json")
    doc["valid"], doc["verdict"], doc["error"] = False, "error", "interrupted"
    doc["invalid_reasons"] = ["run interrupted: results cover 5-21.3 s of the planned 60 s"]
    doc["series"] = doc["histograms"] = None
    facts = inspect(render_html(doc, None))
    assert facts.verdict == "error"
    assert "INTERRUPTED" in facts.verdict_text
    assert "results cover 5-21.3 s of the planned 60 s" in facts.verdict_text


def test_failed_run_lists_failed_gates_in_the_banner() -> None:
    doc = load_fixture("synthetic-fallback-kill.results.json")
    failed = [g for g in doc["gates"] if not g["passed"]]
    assert failed, "fixture should carry a failed gate"
    doc["series"] = doc["histograms"] = None
    facts = inspect(render_html(doc, None))
    assert facts.verdict == "failed"
    for g in failed:
        assert g["expr"] in facts.verdict_text


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {
            "schema": "signflow-harness/results",
            "schema_version": 1,
            "verdict": "error",
            "error": "stack failed to start: TorchServe exited (rc=1)",
        },
        {
            "verdict": "passed",
            "summary": None,
            "series": None,
            "histograms": None,
            "events": None,
            "faults": None,
            "gates": None,
            "comparison": None,
            "provenance": None,
            "scenario": None,
        },
    ],
    ids=["empty", "error-run", "all-null"],
)
def test_missing_data_never_crashes(doc: dict, tmp_path) -> None:
    facts = inspect(build_report(doc, None, tmp_path / "report.html").read_text())
    assert facts.verdict in {"error", "passed"}
    assert facts.images == []
    assert "No per-second latency series" in facts.text
    assert "No baseline" in facts.text or "no summary" in facts.text
    if doc.get("error"):
        assert "TorchServe exited" in facts.verdict_text


def test_values_are_escaped_and_secrets_never_reach_the_report() -> None:
    doc = load_fixture("synthetic-baseline.results.json")
    doc["name"] = "<script>alert(1)</script>"
    doc["scenario_yaml"] += (
        "  env:\n    TORCHSERVE_TOKEN: s3cr3t-token-value\n    token_auth: true\n"
    )
    doc["provenance"]["configs"]["torchserve"] = {"inference_key": "k3y-value", "port": 8080}
    doc["series"] = doc["histograms"] = None
    html = render_html(doc, None)
    facts = inspect(html)
    assert "script" not in facts.tags
    assert "&lt;script&gt;" in html
    assert "s3cr3t-token-value" not in html
    assert "k3y-value" not in html
    assert "token_auth: true" in html  # a boolean setting is not a secret


def test_hdr_histogram_decoded_in_milliseconds() -> None:
    doc = load_fixture("synthetic-fallback-kill.results.json")
    xs, ys = F._hdr_curve(doc, "frame")
    assert xs[-1] == pytest.approx(F.HDR_MAX_X)  # up to 99.99 %
    p50 = doc["summary"]["frame"]["latency_ms"]["p50"]
    i50 = int(abs(xs - 2.0).argmin())
    assert ys[i50] == pytest.approx(p50, rel=0.05)
    # Without the encoded histogram the stored percentile curve is used.
    doc["histograms"]["frame_latency"] = ""
    _, ys2 = F._hdr_curve(doc, "frame")
    curve = doc["histograms"]["percentile_curve"]["frame"]
    assert list(ys2) == [v for _, v in curve]


def test_fixtures_follow_the_results_schema() -> None:
    keys = {
        "schema",
        "schema_version",
        "run_id",
        "name",
        "started_at",
        "finished_at",
        "scenario",
        "scenario_yaml",
        "valid",
        "invalid_reasons",
        "verdict",
        "summary",
        "series",
        "histograms",
        "events",
        "faults",
        "gates",
        "comparison",
        "provenance",
    }
    for path in FIXTURES.glob("*.results.json"):
        doc = json.loads(path.read_text())
        assert keys <= set(doc), (path.name, keys - set(doc))
        assert doc["schema"] == "signflow-harness/results" and doc["schema_version"] == 1
        assert doc.get("fixture_note"), f"{path.name}: say how the fixture was made"
        n = len(doc["series"]["t"])
        for k, v in doc["series"].items():
            if isinstance(v, list):
                assert len(v) == n, (path.name, k)


def test_every_compared_metric_is_reported() -> None:
    doc = load_fixture("recorded-quickstart.results.json")
    doc["series"] = doc["histograms"] = None
    ctx = build_context(doc, None)
    shown = {r["metric"] for g in ctx["summary_groups"] for r in g["rows"]}
    shown |= {r["metric"] for r in ctx["other_compared"]}
    assert {m["metric"] for m in doc["comparison"]["metrics"]} <= shown
    assert "generator.late_share" in {r["metric"] for r in ctx["other_compared"]}


def test_one_account_of_the_outage(built_reports: dict[str, Built]) -> None:
    """Heading, table, bands and chart all use the fault entry's windows (issue 10 item 7):
    a real run whose TorchServe answered the backend before the harness saw READY."""
    built = built_reports["recorded-fallback-kill-windows"]
    fault = built.results["faults"][0]
    facts = inspect(built.html)
    lo, hi = fault["recovery_window_s"]
    heading = (
        f"outage {fault['start_s']:.1f} s → {fault['end_s']:.1f} s, recovery {lo:.1f} s → "
        f"{hi:.1f} s (READY at {fault['ready_s']:.1f} s, answering again at "
        f"{fault['recovered_s']:.1f} s)"
    )
    assert heading in facts.text
    # Negative, explained, never clamped to 0.
    assert fault["time_to_recover_after_ready_s"] < 0
    after = f"{fault['time_to_recover_after_ready_s']:.2f} s (TorchServe answered the backend"
    assert after in facts.text
    assert f"{fault['restart_duration_s']:.2f} s" in facts.text
    assert "Longest session stall in the recovery window" in facts.text
    stall = built.results["summary"]["stall"]["max_ms"]
    assert "longest wait of a session (max stall)" in facts.text
    assert f"{stall:,.0f} ms" in facts.text
    # The shaded bands are exactly those windows.
    assert F.windows(built.results) == [
        ("outage", fault["start_s"], fault["end_s"]),
        ("recovery", lo, hi),
    ]
    served = next(i for i in facts.images if i["alt"].startswith("Stacked area chart"))
    assert (
        f"outage window shaded from {fault['start_s']:.2f} s to {fault['end_s']:.2f} s"
        in (served["alt"])
    )


def test_leak_slopes_are_tabled_and_the_rss_fit_drawn() -> None:
    doc = load_fixture("synthetic-baseline.results.json")
    rss = doc["series"]["rss_mb"]
    comp = next(iter(rss))
    doc["summary"]["memory"] = {
        comp: {"rss_mb_per_h": 1234.5, "rss_mb_per_h_low": 1200.0, "rss_mb_per_h_high": 1300.0,
               "fds_per_h": 0.0, "fds_per_h_low": 0.0, "fds_per_h_high": 0.0,
               "threads_per_h": None, "reason": "threads: not sampled",
               "rss_mb_start": 300.0},
    }  # fmt: skip
    doc["summary"]["drift"] = {"block_s": 10.0, "blocks": 3, "frame_p99_ms_per_h": -2.0}
    doc["gates"].append(
        {"expr": f"memory.{comp}.rss_mb_per_h < 20", "metric": f"memory.{comp}.rss_mb_per_h",
         "op": "<", "threshold": 20.0, "measured": 1234.5, "passed": False,
         "reason": "measured 1234.5, required < 20"}
    )  # fmt: skip
    ctx = build_context(doc, None)
    rows = dict(ctx["drift"])
    assert rows[f"{comp}: RSS / open fds / threads"] == (
        "+1,234 MB/h [+1,200, +1,300] / +0.00 /h [+0.00, +0.00] / — (threads: not sampled)"
    )
    assert rows["frame p99 (3 blocks of 10 s)"] == "-2.0 ms/h"
    gate = next(g for g in ctx["gates"] if g["expr"].startswith("memory."))
    assert gate["measured"] == "1,234 MB/h" and gate["threshold"] == "< 20.0 MB/h"
    fig = F.cpu_over_time(doc)
    assert fig is not None and f"{comp} RSS fit 1,234 MB per hour" in fig.alt
    assert "Leaks and drift" in render_html(doc, None)


def test_prometheus_section_only_with_a_recorded_prometheus() -> None:
    """results.prometheus -> a "Prometheus" section linking each query, and the hint for
    after the run; a compose stack's record (no stored data) says the series are gone."""
    doc = load_fixture("recorded-baseline-quick.results.json")
    assert 'id="prometheus"' not in render_html(doc, None)
    link = "http://127.0.0.1:9090/graph?g0.expr=up&g0.tab=0"
    doc = copy.deepcopy(doc)
    doc["run_dir"] = "/runs/r1"
    doc["prometheus"] = {
        "url": "http://127.0.0.1:9090", "data_dir": "/runs/r1/prometheus/data",
        "start_unix_s": 0.0, "end_unix_s": 20.0,
        "queries": [{"expr": "up", "about": "targets up", "link": link}],
    }  # fmt: skip
    html = render_html(doc, None)
    section = html.split('<section id="prometheus"', 1)[1].split("</section>", 1)[0]
    assert (
        '<a href="http://127.0.0.1:9090/graph?g0.expr=up&amp;g0.tab=0"><code>up</code>' in section
    )
    assert "harness judge --run /runs/r1" in section
    assert "--web.listen-address=127.0.0.1:9090" in section
    assert '<a href="#prometheus">' in html
    doc["prometheus"]["data_dir"] = None
    section = render_html(doc, None).split('<section id="prometheus"', 1)[1]
    assert "not kept in the run dir" in section.split("</section>", 1)[0]
