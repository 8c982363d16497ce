"""``judgement.html``: the rollout judged from Prometheus on one self-contained page.

Built from the typed :class:`~harness.analysis.judgement.ProductionJudgement` only. The steps
table is the run report's rollout table (the same view, ``render.rollout_view``: a rollout is
shown one way wherever it was judged); around it: the verdict, the interval and the server, the
bucket edges that bound every figure's resolution, and a link to each series read.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from harness.analysis.judgement import ProductionJudgement

from .render import TEMPLATES, rollout_view

WORDS = {
    "go": "GO",
    "no_go": "NO-GO",
    "inconclusive": "INCONCLUSIVE",
    "continue": "NOT DECIDED YET",
}


def render_judgement(j: ProductionJudgement) -> str:
    """The page's HTML."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every value is data (labels, reasons), never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    view = rollout_view(j.rollout)
    return env.get_template("judgement.html.j2").render(j=j, word=WORDS[j.decision], rollout=view)


def write_judgement_page(j: ProductionJudgement, path: Path) -> Path:
    """Write ``judgement.html`` at ``path`` (parents made) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_judgement(j), encoding="utf-8")
    return path
