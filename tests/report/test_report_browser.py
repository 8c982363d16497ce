"""The report in a real browser: headless Chromium renders it offline and requests nothing.

Screenshots, DOM dumps and net logs are kept under test-artifacts/report/browser/.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from html_inspect import inspect
from PIL import Image, ImageStat
from report_cases import ARTIFACTS, CASES, Built
from report_chromium import find_chromium, load

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None, reason="headless Chromium not installed"),
]
SHOTS = ARTIFACTS / "browser"


def _not_blank(png: Path) -> None:
    im = Image.open(png).convert("RGB")
    assert im.width >= 1200 and im.height >= 3000
    small = im.resize((160, 500))
    colours = len(small.getcolors(maxcolors=1 << 16) or range(1 << 16))
    spread = max(hi - lo for lo, hi in ImageStat.Stat(small).extrema)
    assert colours > 50 and spread > 150, (colours, spread)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_chromium_renders_report_offline(built_reports: dict[str, Built], name: str) -> None:
    built = built_reports[name]
    run = load(built.html_path, SHOTS)

    # The recorder works (it saw the document itself), and saw nothing else leave the machine.
    assert built.html_path.resolve().as_uri() in run.page_requests
    assert run.remote_requests == []
    _not_blank(run.screenshot)

    facts = inspect(run.dom)
    assert facts.verdict == built.results["verdict"]
    assert "gates-table" in facts.ids
    assert sorted(facts.figures) == sorted(built.case.figures)
    assert all(i["src"].startswith("data:image/png") and i.get("alt") for i in facts.images)


class _Hits(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


def test_a_page_that_fetches_something_is_caught(tmp_path: Path) -> None:
    """Control: the no-network check must fail on a page that loads a remote image."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/pixel.png"
        page = tmp_path / "leaky" / "report.html"
        page.parent.mkdir()
        page.write_text(
            f'<!DOCTYPE html><html><body><h1>x</h1><img src="{url}" alt="x"></body></html>'
        )
        run = load(page, tmp_path / "out")
    finally:
        server.shutdown()
        server.server_close()
    assert url in run.remote_requests
    assert "/pixel.png" in _Hits.hits
