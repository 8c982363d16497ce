"""decision.html in a real browser (headless Chromium, offline): the verdict first, a row per
criterion, both plots as embedded PNGs, the unknowns with what settles them; nothing fetched.

Screenshots and DOM dumps are kept under test-artifacts/decision/browser/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from decision_builders import GPU_TS, OLD, decision_file, level, sweep_doc, write_from_dir
from PIL import Image, ImageStat

import harness

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "report"))

from html_inspect import inspect  # noqa: E402
from report_chromium import find_chromium, load  # noqa: E402

SHOTS = REPO / "test-artifacts" / "decision" / "browser"
CRITERIA = (
    "  throughput: {}\n  frame_latency: {}\n  inference_latency: {}\n  gpu: {}\n"
    "  kill: {gates: [errors.total == 0, faults.outage.outage_latency_ms.p99 <= 250]}\n"
    "  errors: {}\n"
)


def _page(tmp_path: Path) -> harness.decision.DecisionOutcome:
    sweep = sweep_doc(
        [level(8, "pass"), level(16, "pass"), level(32, "pass"), level(64, "pass")],
        [level(8, "pass"), level(16, "pass"), level(32, "fail"), level(24, "fail")],
    )
    # The old pipeline as the candidate: frame p95 42 ms, no GPU: no-go, GPU unknown.
    src = write_from_dir(tmp_path / "from", baseline=GPU_TS, candidate=OLD, sweep=sweep)
    path = decision_file(tmp_path / "decision.yaml", CRITERIA)
    return harness.decide(path, out=tmp_path / "o", from_dir=src, run_missing=False)


def test_page_has_every_part(tmp_path: Path) -> None:
    outcome = _page(tmp_path)
    facts = inspect(outcome.html_path.read_text(encoding="utf-8"))
    assert facts.remote_refs == [] and facts.th_without_scope == 0
    assert facts.tags[:3] == ["html", "head", "meta"]
    assert facts.verdict == "no_go"
    assert outcome.decision.sentence in " ".join(facts.text.split())
    assert sorted(facts.figures) == ["capacity", "latency"]
    assert all(i["src"].startswith("data:image/png") and i.get("alt") for i in facts.images)
    assert {"verdict", "criteria", "unknowns", "evidence"} <= set(facts.ids)
    assert "run on a GPU host: scripts/gpu-run.sh" in facts.text


@pytest.mark.browser
@pytest.mark.skipif(find_chromium() is None, reason="headless Chromium not installed")
def test_chromium_renders_decision_offline(tmp_path: Path) -> None:
    outcome = _page(tmp_path)
    run = load(outcome.html_path, SHOTS, height=2400)
    assert outcome.html_path.resolve().as_uri() in run.page_requests
    assert run.remote_requests == []
    im = Image.open(run.screenshot).convert("RGB")
    small = im.resize((160, 300))
    colours = len(small.getcolors(maxcolors=1 << 16) or range(1 << 16))
    spread = max(hi - lo for lo, hi in ImageStat.Stat(small).extrema)
    assert colours > 50 and spread > 150, (colours, spread)
    facts = inspect(run.dom)
    assert facts.verdict == "no_go"
    assert sorted(facts.figures) == ["capacity", "latency"]
    # The verdict comes first: the verdict box is the first thing in the body.
    body = run.dom.split("<body", 1)[1]
    assert body.index('id="verdict"') < body.index('id="criteria"')
    for c in outcome.decision.criteria:
        assert f'data-criterion="{c.name}" data-status="{c.status.value}"' in run.dom
