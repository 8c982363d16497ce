"""``decision.html``: the decision on one self-contained page (Jinja2, matplotlib PNGs embedded
as data URIs, no network). The verdict sentence first; a row per criterion (status, figure,
target, evidence link); the latency and capacity plots side by side; the unknowns and what
would settle each. Built from the typed :class:`~harness.decision.model.Decision` and the
typed evidence only.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import jinja2

from harness.report.figures import BLUE, GREY, ORANGE, VERMILION

from .evidence import EvidenceSet, SweepDocument
from .model import Decision, Status

TEMPLATES = Path(__file__).resolve().parent / "templates"
DPI = 110


@dataclass(frozen=True)
class Plot:
    """One embedded figure: key (tests, anchors), title, alt text and the PNG as a data URI."""

    key: str
    title: str
    alt: str
    src: str


def _png(fig: object) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def latency_plot(decision: Decision) -> Plot | None:
    """Frame and inference p95, baseline vs candidate, against each criterion's target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [c for c in decision.criteria if c.name in ("frame_latency", "inference_latency")]
    rows = [c for c in rows if c.measured and c.measured[0].value is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    xs = range(len(rows))
    width = 0.38
    base = [c.baseline[0].value if c.baseline else None for c in rows]
    cand = [c.measured[0].value for c in rows]
    ax.bar([x - width / 2 for x in xs], [b or 0 for b in base], width, color=BLUE,
           label="baseline (old pipeline)")  # fmt: skip
    ax.bar([x + width / 2 for x in xs], [v or 0 for v in cand], width, color=ORANGE,
           hatch="//", edgecolor="white", label="candidate (TorchServe)")  # fmt: skip
    for x, c in zip(xs, rows, strict=True):
        limit = c.limit
        if limit is not None:
            ax.hlines(limit, x - 0.5, x + 0.5, colors=VERMILION, linestyles="--")
            ax.annotate(f"target < {limit:g} ms", (x, limit), textcoords="offset points",
                        xytext=(0, 3), ha="center", fontsize=8, color=VERMILION)  # fmt: skip
    ax.set_xticks(list(xs), [c.title for c in rows])
    ax.set_ylabel("p95 latency (ms)")
    ax.legend(fontsize=8, loc="best")
    ax.spines[["top", "right"]].set_visible(False)
    words = "; ".join(
        f"{c.title} p95: baseline {_ms(b)}, candidate {_ms(v)}"
        for c, b, v in zip(rows, base, cand, strict=True)
    )
    return Plot("latency", "p95 latency vs target", f"Bar chart. {words}.", _png(fig))


def _ms(v: float | None) -> str:
    return "not measured" if v is None else f"{v:.1f} ms"


def capacity_plot(sweep: SweepDocument, ids: tuple[str, str]) -> Plot | None:
    """Frame p95 against sessions for the baseline and candidate configurations of the sweep,
    with the constraint's limit: where each line crosses it is its capacity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limit = _constraint_limit(sweep)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    words = []
    drawn = False
    for cid, label, colour, marker, line in (
        (ids[0], "baseline", BLUE, "o", "-"),
        (ids[1], "candidate", ORANGE, "^", "--"),
    ):
        pts = sorted((p for p in sweep.points if p.config == cid), key=lambda p: p.sessions)
        pts = [p for p in pts if p.figures.p95_ms is not None]
        if not pts:
            continue
        drawn = True
        ys = [p.figures.p95_ms or 0.0 for p in pts]
        ax.plot(
            [p.sessions for p in pts],
            ys,
            label=f"{label} ({cid})",
            color=colour,
            marker=marker,
            linestyle=line,
        )
        for p in pts:
            if p.outcome != "pass":
                ax.annotate(p.outcome, (p.sessions, p.figures.p95_ms or 0), fontsize=7,
                            textcoords="offset points", xytext=(4, -8), color=GREY)  # fmt: skip
        words.append(
            f"{label}: "
            + ", ".join(f"{p.sessions} sessions {p.figures.p95_ms:.1f} ms {p.outcome}" for p in pts)
        )
    if not drawn:
        plt.close(fig)
        return None
    if limit is not None:
        ax.axhline(limit, color=VERMILION, linestyle=":", label=f"p95 < {limit:g} ms")
    values = [p.figures.p95_ms or 0 for p in sweep.points]
    if values and max(values) > 10 * (limit or 30):
        ax.set_yscale("log")
    ax.set_xlabel("sessions")
    ax.set_ylabel("frame p95 latency (ms)")
    ax.legend(fontsize=8, loc="best")
    ax.spines[["top", "right"]].set_visible(False)
    return Plot(
        "capacity",
        "capacity search: frame p95 vs load",
        "Line chart of the capacity search. " + "; ".join(words) + ".",
        _png(fig),
    )


def _constraint_limit(sweep: SweepDocument) -> float | None:
    """The threshold of the sweep's frame p95 constraint (``frame.latency_ms.p95 < 30``)."""
    from harness.analysis.gates import GateSyntaxError, parse_gate

    for expr in sweep.constraints:
        try:
            gate = parse_gate(expr)
        except GateSyntaxError:
            continue
        if gate.metric == "frame.latency_ms.p95" and gate.op in ("<", "<="):
            return gate.threshold
    return None


STATUS_WORDS = {Status.MET: "MET", Status.NOT_MET: "NOT MET", Status.UNKNOWN: "UNKNOWN"}


def render(decision: Decision, ev: EvidenceSet, capacity_ids: tuple[str, str] | None) -> str:
    """The page's HTML."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    plots = [p for p in (latency_plot(decision),) if p is not None]
    if ev.capacity is not None and capacity_ids is not None:
        cap = capacity_plot(ev.capacity.sweep, capacity_ids)
        if cap is not None:
            plots.append(cap)
    return env.get_template("decision.html.j2").render(
        d=decision,
        plots=plots,
        status_words=STATUS_WORDS,
        unknown=decision.of(Status.UNKNOWN),
    )


def write_page(
    decision: Decision, ev: EvidenceSet, path: Path, capacity_ids: tuple[str, str] | None = None
) -> Path:
    """Write decision.html; ``capacity_ids``: the sweep's (baseline, candidate) configurations."""
    path.write_text(render(decision, ev, capacity_ids), encoding="utf-8")
    return path
