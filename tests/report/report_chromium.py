"""Drive headless Chromium on a report file over the DevTools protocol (loopback only).

One load gives: a full-page screenshot, the DOM after load, every request the PAGE made
(``Network.requestWillBeSent``, the document's own file:// load included, which proves the
recorder works) and a net log. Chromium's own background traffic (component updates, account
checks) is browser-initiated, not the page's, and is told apart by the net log's initiator.

By hand: ``.venv/bin/python tests/report/report_chromium.py REPORT.html OUT_DIR``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import urlopen

from websockets.sync.client import ClientConnection, connect

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--hide-scrollbars",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-default-browser-check",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-pings",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
LOCAL_SCHEMES = ("file:", "data:", "about:")


def find_chromium() -> str | None:
    """Path of a Chromium binary, or None."""
    for c in CHROMIUM_CANDIDATES:
        path = c if os.path.isabs(c) and os.access(c, os.X_OK) else shutil.which(c)
        if path:
            return path
    return None


@dataclass
class BrowserRun:
    """What one headless load of a page produced."""

    screenshot: Path
    dom: str
    page_requests: list[str]
    netlog: Path
    netlog_page_requests: list[str] = field(default_factory=list)

    @property
    def remote_requests(self) -> list[str]:
        """Requests of the page (by either witness) to anything but file:/data:/about:."""
        urls = self.page_requests + self.netlog_page_requests
        return [u for u in urls if not u.startswith(LOCAL_SCHEMES)]


def netlog_page_urls(netlog: Path) -> list[str]:
    """URLs of URL_REQUESTs in the net log that a page started (initiator is an origin)."""
    text = netlog.read_text(encoding="utf-8", errors="replace").rstrip()
    if not text.endswith("}"):  # Chromium may stop before closing the JSON array
        text = text.rstrip(",\n ") + "]}"
    doc = json.loads(text)
    consts = doc.get("constants", {})
    url_request = consts.get("logSourceType", {}).get("URL_REQUEST")
    start_job = consts.get("logEventTypes", {}).get("URL_REQUEST_START_JOB")
    urls = []
    for ev in doc.get("events", []):
        p = ev.get("params") or {}
        if ev.get("type") != start_job or ev.get("source", {}).get("type") != url_request:
            continue
        # Browser-internal fetches (updates, account checks) carry no origin as initiator.
        if p.get("url") and p.get("initiator") != "not an origin":
            urls.append(str(p.get("url")))
    return urls


class _Cdp:
    """Minimal synchronous DevTools protocol client over one page's WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._id = 0
        self.events: list[dict] = []

    def call(self, method: str, timeout: float = 60.0, **params: object) -> dict:
        self._id += 1
        my_id = self._id
        self._ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, name: str, timeout: float = 60.0) -> dict:
        for ev in self.events:
            if ev.get("method") == name:
                return ev
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(msg)
            if msg.get("method") == name:
                return msg


def _devtools_port(profile: Path, proc: subprocess.Popen[bytes], timeout: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited early (rc={proc.returncode})")
        if marker.exists():
            first = marker.read_text().splitlines()[:1]
            if first and first[0].isdigit():
                return int(first[0])
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


def load(
    html: Path, out_dir: Path, *, width: int = 1280, height: int = 4000, timeout: float = 90.0
) -> BrowserRun:
    """Load ``html`` in headless Chromium; screenshot, DOM and the page's requests."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("headless Chromium not found (install Debian's 'chromium')")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{html.parent.name}-{html.stem}"
    shot, netlog = out_dir / f"{stem}.png", out_dir / f"{stem}.netlog.json"
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as tmp:
        profile = Path(tmp)
        cmd = [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--log-net-log={netlog}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        # Own process group: on any error the whole Chromium tree is ended, nothing leaks.
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            port = _devtools_port(profile, proc, timeout)
            with urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
                targets = json.load(resp)
            page = next(t for t in targets if t.get("type") == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=20) as ws:
                cdp = _Cdp(ws)
                cdp.call("Network.enable")
                cdp.call("Page.enable")
                cdp.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=height,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                cdp.call("Page.navigate", url=html.resolve().as_uri())
                cdp.wait_event("Page.loadEventFired", timeout)
                time.sleep(0.3)  # let late subresource requests (if any) show up
                dom = cdp.call(
                    "Runtime.evaluate",
                    expression="document.documentElement.outerHTML",
                    returnByValue=True,
                )["result"]["value"]
                img = cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)[
                    "data"
                ]
                shot.write_bytes(base64.b64decode(img))
                requests = [
                    ev["params"]["request"]["url"]
                    for ev in cdp.events
                    if ev.get("method") == "Network.requestWillBeSent"
                ]
                # The browser may drop the socket while closing: that is a clean close too.
                with contextlib.suppress(Exception):
                    cdp.call("Browser.close", timeout=10)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        except BaseException:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
            raise
    return BrowserRun(shot, dom, requests, netlog, netlog_page_urls(netlog))


if __name__ == "__main__":
    run = load(Path(sys.argv[1]), Path(sys.argv[2]))
    print(run.screenshot, len(run.dom), run.page_requests, run.netlog_page_requests)
