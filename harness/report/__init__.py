"""Self-contained HTML report of one harness run (Jinja2 + matplotlib, no network at view time)."""

from .render import build_context, build_report, render_html

__all__ = ["build_context", "build_report", "render_html"]
