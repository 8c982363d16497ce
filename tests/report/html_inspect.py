"""Parse a report with html.parser into the facts the tests check (no browser needed)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

REMOTE = re.compile(r"^\s*(https?:)?//", re.I)
CSS_REMOTE = re.compile(r"(@import|url\(\s*['\"]?\s*(https?:)?//)", re.I)


@dataclass
class Facts:
    """What a report page contains, as the tests see it."""

    tags: list[str] = field(default_factory=list)
    remote_refs: list[str] = field(default_factory=list)
    images: list[dict[str, str]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    headings: list[tuple[str, str]] = field(default_factory=list)
    verdict: str | None = None
    verdict_text: str = ""
    gate_rows: list[list[str]] = field(default_factory=list)
    th_without_scope: int = 0
    ids: list[str] = field(default_factory=list)
    text: str = ""


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.f = Facts()
        self._stack: list[str] = []
        self._in_verdict = 0
        self._in_gates = 0
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._heading: tuple[str, list[str]] | None = None
        self._in_style = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        self.f.tags.append(tag)
        for k in ("src", "href", "srcset", "data", "action", "poster", "background"):
            if k in a and REMOTE.search(a[k]):
                self.f.remote_refs.append(f"<{tag} {k}={a[k]}>")
        if "style" in a and CSS_REMOTE.search(a["style"]):
            self.f.remote_refs.append(f"<{tag} style={a['style']}>")
        if "id" in a:
            self.f.ids.append(a["id"])
        if tag == "img":
            self.f.images.append(a)
        if "data-figure" in a:
            self.f.figures.append(a["data-figure"])
        if a.get("id") == "verdict":
            self.f.verdict = a.get("data-verdict")
            self._in_verdict = 1
        elif self._in_verdict and tag not in ("br", "img", "meta"):
            self._in_verdict += 1
        if a.get("id") == "gates-table":
            self._in_gates = 1
        elif self._in_gates and tag not in ("br", "img"):
            self._in_gates += 1
        if self._in_gates and tag == "tr":
            self._row = []
        if self._row is not None and tag in ("td", "th"):
            self._cell = []
        if tag == "th" and "scope" not in a:
            self.f.th_without_scope += 1
        if tag in ("h1", "h2", "h3"):
            self._heading = (tag, [])
        if tag == "style":
            self._in_style = True

    def handle_endtag(self, tag: str) -> None:
        if self._cell is not None and tag in ("td", "th") and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.f.gate_rows.append(self._row)
            self._row = None
        if self._in_gates and tag not in ("br", "img"):
            self._in_gates -= 1
        if self._in_verdict and tag not in ("br", "img", "meta"):
            self._in_verdict -= 1
        if self._heading and tag == self._heading[0]:
            self.f.headings.append((tag, " ".join("".join(self._heading[1]).split())))
            self._heading = None
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            if CSS_REMOTE.search(data):
                self.f.remote_refs.append(f"<style> {data[:80]}")
            return
        self._text.append(data)
        if self._in_verdict:
            self.f.verdict_text += data
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading[1].append(data)

    def close(self) -> None:
        super().close()
        self.f.text = " ".join(" ".join(self._text).split())
        self.f.verdict_text = " ".join(self.f.verdict_text.split())


def inspect(html: str) -> Facts:
    """Facts of ``html``."""
    p = _Parser()
    p.feed(html)
    p.close()
    return p.f
