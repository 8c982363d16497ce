"""sweep.html: built from a recorded sweep.json (a real batching sweep on the local stack),
checked as HTML and in headless Chromium like the run report (offline, no request leaves)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from harness.sweep.report import write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "tests" / "report"))

from html_inspect import inspect  # noqa: E402
from report_chromium import find_chromium, load  # noqa: E402

FIXTURE = HERE / "fixtures" / "batching-sweep.json"
SHOTS = REPO / "test-artifacts" / "sweep" / "browser"


@pytest.fixture
def recorded() -> dict:
    return json.loads(FIXTURE.read_text())


def test_report_html_has_every_section(tmp_path: Path, recorded: dict) -> None:
    page = write_report(recorded, tmp_path / "sweep.html")
    facts = inspect(page.read_text())
    assert facts.remote_refs == []
    assert {"recommendation", "configurations-table", "points-table"} <= set(facts.ids)
    assert sorted(facts.figures) == ["batch-size", "latency-vs-load", "pareto"]
    assert all(i["src"].startswith("data:image/png") and i.get("alt") for i in facts.images)
    rec = recorded["recommendation"]
    text = facts.text
    if rec is not None:
        assert f"Recommended: {rec['config']}" in text
        assert rec["why"] in text
    for c in recorded["configurations"]:
        assert c["id"] in text
    assert facts.th_without_scope == 0


def test_partial_and_empty_sweeps_say_so(tmp_path: Path, recorded: dict) -> None:
    doc = copy.deepcopy(recorded)
    doc.update(status="interrupted", recommendation=None, points=[])
    for c in doc["configurations"]:
        c.update(status="not run", points=[], capacity=None, value=None)
    html = write_report(doc, tmp_path / "sweep.html").read_text()
    assert 'data-status="none"' in html and "sweep interrupted: partial results" in html
    assert 'data-missing="pareto"' in html and 'data-missing="latency-vs-load"' in html


@pytest.mark.browser
@pytest.mark.skipif(find_chromium() is None, reason="headless Chromium not installed")
def test_chromium_renders_sweep_report_offline(tmp_path: Path, recorded: dict) -> None:
    page = write_report(recorded, tmp_path / "sweep" / "sweep.html")
    run = load(page, SHOTS, height=3000)
    assert page.resolve().as_uri() in run.page_requests
    assert run.remote_requests == []
    im = Image.open(run.screenshot).convert("RGB")
    small = im.resize((160, 400))
    colours = len(small.getcolors(maxcolors=1 << 16) or range(1 << 16))
    spread = max(hi - lo for lo, hi in ImageStat.Stat(small).extrema)
    assert colours > 50 and spread > 150, (colours, spread)
    facts = inspect(run.dom)
    assert sorted(facts.figures) == ["batch-size", "latency-vs-load", "pareto"]
    rec = recorded["recommendation"]
    marker = f'data-config="{rec["config"]}"' if rec else 'data-status="none"'
    assert marker in run.dom
