"""sweep.html: one self-contained page (inline CSS, figures as data: PNGs, no script, no
network), built from sweep.json alone.

Sections: the recommendation in words (``#recommendation``, ``data-status``), the table of
configurations (``#configurations-table``), the Pareto plots (throughput vs p95 and p99, the
front marked), latency vs load per configuration with the SLO line and each knee, batch size
achieved vs configured, and every point with a link to its run report.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from harness.analysis.gates import parse_gate
from harness.report.figures import STYLES, WIDTH_IN, Figure, _png, _style_axes

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
COLOURS = [s["color"] for s in STYLES]


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _slo(doc: dict[str, Any], metric_prefix: str) -> tuple[str, float] | None:
    """(metric, bound) of the first ``<``/``<=`` constraint on a metric starting with prefix."""
    for expr in doc.get("constraints") or []:
        gate = parse_gate(expr)
        if gate.metric.startswith(metric_prefix) and gate.op in ("<", "<=") and gate.threshold:
            return gate.metric, float(gate.threshold)
    return None


def _style(i: int) -> dict[str, Any]:
    return {"color": COLOURS[i % len(COLOURS)], "marker": MARKERS[i % len(MARKERS)]}


def pareto_figure(doc: dict[str, Any]) -> Figure | None:
    """Throughput vs p95 and vs p99 of every valid point; the front joined and ringed."""
    points = [p for p in doc["points"] if p["valid"] and p["figures"]["inferences_per_s"]]
    if not points:
        return None
    failed = [p for p in points if p["outcome"] != "pass"]
    index = {c["id"]: i for i, c in enumerate(doc["configurations"])}
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH_IN, 3.9))
    for ax, key, label in zip(axes, ("p95_ms", "p99_ms"), ("p95", "p99"), strict=True):
        front = set(doc["pareto"].get(key) or [])
        seen: set[str] = set()
        xs_f = [p["figures"]["inferences_per_s"] for p in failed if p["figures"][key]]
        ys_f = [p["figures"][key] for p in failed if p["figures"][key]]
        if xs_f:
            ax.scatter(xs_f, ys_f, s=30, marker="x", color="#9aa5b1", zorder=2,
                       label="misses a constraint")  # fmt: skip
        for p in points:
            y = p["figures"][key]
            if y is None or p["outcome"] != "pass":
                continue
            st = _style(index[p["config"]])
            ax.scatter(
                p["figures"]["inferences_per_s"], y, s=36, color=st["color"],
                marker=st["marker"], label=None if p["config"] in seen else p["config"], zorder=3,
            )  # fmt: skip
            seen.add(p["config"])
        fpts = sorted(
            (p["figures"]["inferences_per_s"], p["figures"][key])
            for p in points
            if p["id"] in front and p["figures"][key] is not None
        )
        if fpts:
            xs, ys = zip(*fpts, strict=True)
            ax.plot(xs, ys, color="#222", linestyle="--", linewidth=1.2, zorder=2)
            ax.scatter(xs, ys, s=140, facecolors="none", edgecolors="#222", linewidths=1.4,
                       zorder=4, label="Pareto front")  # fmt: skip
        ax.set_xlabel("inferences per second")
        ax.set_ylabel(f"frame latency {label} (ms)")
        ax.set_title(f"throughput vs {label}", fontsize=10)
        _style_axes(ax)
    axes[1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    n_front = len(doc["pareto"].get("p95_ms") or [])
    return Figure(
        "pareto",
        "Pareto front: throughput vs latency",
        f"Scatter of {len(points)} valid points, inferences per second against frame latency "
        f"p95 (left) and p99 (right), {len(failed)} of them missing a constraint (grey x); of "
        f"those meeting every constraint, {n_front} form the p95 front (ringed, dashed line): "
        "no other such point has both more throughput and less latency.",
        _png(fig),
        "Right and down is better. Ringed points meet the constraints and are not beaten on both "
        "axes by another point that does.",
    )


def latency_load_figure(doc: dict[str, Any]) -> Figure | None:
    """p95 (and the SLO metric when it is another one) vs sessions, per configuration."""
    slo = _slo(doc, "frame.latency_ms") or _slo(doc, "inference.latency_ms")
    key = {
        "frame.latency_ms.p95": "p95_ms",
        "frame.latency_ms.p99": "p99_ms",
        "inference.latency_ms.p95": "inference_p95_ms",
        "inference.latency_ms.p99": "inference_p99_ms",
    }.get(slo[0] if slo else "", "p95_ms")
    by_config = []
    for i, c in enumerate(doc["configurations"]):
        mine = [p for p in doc["points"] if p["config"] == c["id"] and p["figures"][key]]
        pts = sorted((p["sessions"], p["figures"][key]) for p in mine if p["valid"])
        # INVALID points: drawn hollow and off the line (their latency is not the system's).
        bad = sorted((p["sessions"], p["figures"][key]) for p in mine if not p["valid"])
        if pts or bad:
            by_config.append((i, c, pts, bad))
    if not by_config:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4.2))
    for i, c, pts, bad in by_config:
        st = _style(i)
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker=st["marker"], color=st["color"], label=f"{c['id']} {c['label']}")
        if bad:
            bx, by = zip(*bad, strict=True)
            ax.scatter(bx, by, marker=st["marker"], facecolors="none", edgecolors=st["color"],
                       s=50, label=f"{c['id']} INVALID (load machine)")  # fmt: skip
        if c.get("capacity"):
            knee = [y for x, y in pts if x == c["capacity"]]
            if knee:
                ax.scatter([c["capacity"]], knee, s=160, marker="*", color=st["color"],
                           edgecolors="#222", zorder=5)  # fmt: skip
                ax.annotate(f"knee {c['id']}: {c['capacity']}", (c["capacity"], knee[0]),
                            textcoords="offset points", xytext=(6, 8), fontsize=8)  # fmt: skip
    if slo:
        ax.axhline(
            slo[1],
            color="#b42318",
            linestyle=":",
            linewidth=1.6,
            label=f"SLO {slo[0]} < {slo[1]:g}",
        )
    ymax = max(y for _, _, pts, bad in by_config for _, y in pts + bad)
    if slo and ymax > 20 * slo[1]:
        ax.set_yscale("log")
    ax.set_xlabel("sessions")
    ax.set_ylabel(f"{key.replace('_ms', '')} latency (ms)")
    ax.legend(fontsize=8, loc="best")
    _style_axes(ax)
    fig.tight_layout()
    knees = [f"{c['id']} at {c['capacity']}" for _, c, _, _ in by_config if c.get("capacity")]
    return Figure(
        "latency-vs-load",
        "Latency vs load",
        f"Line chart of {key.replace('_ms', '')} latency against sessions for "
        f"{len(by_config)} configurations"
        + (f", with the SLO at {slo[1]:g} ms as a dotted line" if slo else "")
        + (f"; knees (stars): {', '.join(knees)}" if knees else "")
        + "; hollow markers are INVALID runs (the load machine fell behind), off the lines.",
        _png(fig),
        "The knee is the last load that meets the constraints (the capacity).",
    )


def batch_figure(doc: dict[str, Any]) -> Figure | None:
    """Mean batch size TorchServe achieved vs the configured batch size, per point."""
    rows = []
    for i, c in enumerate(doc["configurations"]):
        ts = (c.get("stack") or {}).get("torchserve") or {}
        if not (c.get("stack") or {}).get("use_torchserve"):
            continue
        for p in doc["points"]:
            got = p["figures"].get("batch_size_mean")
            if p["config"] == c["id"] and got is not None:
                # A configuration always has one (the scenario model defaults it to 16).
                rows.append((i, c, float(ts["batch_size"]), p["sessions"], got))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 3.8))
    labels = [f"{c['id']}\n@{n}" for _, c, _, n, _ in rows]
    xs = range(len(rows))
    ax.bar(xs, [r[2] for r in rows], color="#d7dce1", edgecolor="#555", label="configured")
    for x, (i, _, _, _, got) in zip(xs, rows, strict=True):
        st = _style(i)
        ax.scatter([x], [got], color=st["color"], marker=st["marker"], s=60, zorder=3)
    ax.scatter([], [], color="#222", marker="o", label="achieved (mean)")
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel("batch size")
    ax.legend(fontsize=8)
    _style_axes(ax)
    fig.tight_layout()
    return Figure(
        "batch-size",
        "Batch size achieved vs configured",
        f"Bars: configured batch size; markers: the mean batch TorchServe formed, for {len(rows)} "
        "points (configuration @ sessions).",
        _png(fig),
        "A batch far below the configured size means the delay expires before it fills.",
    )


CSS = """
:root { --ink:#1d232b; --muted:#5b6570; --line:#d7dce1; --pass:#1a7f37; --pass-bg:#e7f5eb;
  --fail:#b42318; --fail-bg:#fdecea; --warn:#8a5a00; --warn-bg:#fff4d6; }
html { background:#eef1f4; }
body { margin:0 auto; padding:28px 36px 48px; max-width:1100px; background:#fff; color:var(--ink);
  font:15px/1.5 system-ui, "Segoe UI", Roboto, Arial, "DejaVu Sans", sans-serif; }
h1 { font-size:1.65rem; margin:0 0 4px; } h2 { font-size:1.25rem; margin:32px 0 10px;
  border-bottom:2px solid var(--ink); }
.meta { color:var(--muted); } code { font-family:ui-monospace, "DejaVu Sans Mono", monospace;
  font-size:.86em; }
.rec { padding:16px 20px; border:3px solid; border-radius:6px; margin:14px 0; }
.rec-met { border-color:var(--pass); background:var(--pass-bg); }
.rec-none { border-color:var(--fail); background:var(--fail-bg); border-style:double; }
.rec-partial { border-color:var(--warn); background:var(--warn-bg); border-style:dashed; }
.rec .headline { font-size:1.3rem; font-weight:700; margin:0 0 6px; }
table { border-collapse:collapse; width:100%; margin:8px 0 14px; font-size:.9rem; }
th, td { padding:5px 8px; border-bottom:1px solid var(--line); text-align:left; }
thead th { background:#e9edf1; border-bottom:2px solid #9aa5b1; }
tbody tr:nth-child(even) { background:#f6f8fa; } td.num { text-align:right;
  font-variant-numeric:tabular-nums; }
tr.chosen { outline:2px solid var(--pass); } .st-met { color:var(--pass); font-weight:700; }
.st-not-met { color:var(--fail); font-weight:700; } .st-unknown, .st-error, .st-not-run {
  color:var(--warn); font-weight:700; }
figure { margin:14px 0 22px; } figure img { max-width:100%; border:1px solid var(--line); }
figcaption { color:var(--muted); font-size:.9rem; }
"""


def _figure(fig: Figure | None, key: str, missing: str) -> str:
    if fig is None:
        return f'<p class="meta" data-missing="{_e(key)}">{_e(missing)}</p>'
    return (
        f'<figure data-figure="{_e(fig.key)}" id="fig-{_e(fig.key)}"><h3>{_e(fig.title)}</h3>'
        f'<img src="{fig.src}" alt="{_e(fig.alt)}"><figcaption>{_e(fig.caption)}</figcaption>'
        "</figure>"
    )


def _rec_block(doc: dict[str, Any]) -> str:
    rec = doc.get("recommendation")
    status = doc.get("status")
    partial = "" if status == "complete" else f" (sweep {status}: partial results)"
    if rec is None:
        unknown = [c["id"] for c in doc["configurations"] if c["status"] in ("unknown", "not run")]
        why = "No configuration met the constraints" + partial + "."
        if unknown:
            why += f" Not decided: {', '.join(unknown)} (see the table)."
        cls = "rec-partial" if status != "complete" else "rec-none"
        return (
            f'<section id="recommendation" class="rec {cls}" data-status="none">'
            f'<p class="headline">No recommendation</p><p>{_e(why)}</p></section>'
        )
    cls = "rec-met" if status == "complete" else "rec-partial"
    return (
        f'<section id="recommendation" class="rec {cls}" data-status="recommended" '
        f'data-config="{_e(rec["config"])}"><p class="headline">Recommended: '
        f"{_e(rec['config'])}{_e(partial)}</p><p>{_e(rec['why'])}</p></section>"
    )


def _config_table(doc: dict[str, Any]) -> str:
    chosen = (doc.get("recommendation") or {}).get("config")
    objective = doc["objective"]["metric"]
    params = doc.get("parameters") or []
    head = "".join(f'<th scope="col">{_e(p)}</th>' for p in params)
    rows = []
    for c in doc["configurations"]:
        cells = "".join(f"<td>{_e(c['params'].get(p, '-'))}</td>" for p in params)
        status = c["status"]
        cap = c["capacity"] if c.get("capacity") is not None else (c.get("capacity_note") or "-")
        value = _num(c.get("value"), 2)
        rows.append(
            f'<tr class="{"chosen" if c["id"] == chosen else ""}" data-config="{_e(c["id"])}">'
            f'<th scope="row">{_e(c["id"])}</th>{cells}'
            f'<td class="st-{status.replace(" ", "-")}">{_e(status)}</td>'
            f"<td>{_e(cap)}</td>"
            + ("" if objective == "capacity" else f"<td class='num'>{_e(value)}</td>")
            + f"<td>{_e(c['cost_words'])}</td><td class='num'>{len(c['points'])}</td>"
            f"<td>{_e(c.get('note') or '')}</td></tr>"
        )
    return (
        '<table id="configurations-table"><thead><tr><th scope="col">config</th>'
        f'{head}<th scope="col">constraints</th><th scope="col">capacity (sessions)</th>'
        + ("" if objective == "capacity" else f'<th scope="col">{_e(objective)}</th>')
        + '<th scope="col">cost</th>'
        '<th scope="col">runs</th><th scope="col">note</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )


def _points_table(doc: dict[str, Any]) -> str:
    rows = []
    for p in doc["points"]:
        f = p["figures"]
        link = f"{p['run_dir']}/report.html"
        rows.append(
            f'<tr data-point="{_e(p["id"])}"><th scope="row"><a href="{_e(link)}">{_e(p["id"])}'
            f"</a></th><td class='num'>{p['sessions']}</td><td>{_e(p['outcome'])}</td>"
            f"<td class='num'>{_num(f['p50_ms'])}</td><td class='num'>{_num(f['p95_ms'])}</td>"
            f"<td class='num'>{_num(f['p99_ms'])}</td>"
            f"<td class='num'>{_num(f['inference_p95_ms'])}</td>"
            f"<td class='num'>{_num(f['inferences_per_s'])}</td>"
            f"<td class='num'>{_num(f['batch_size_mean'], 2)}</td>"
            f"<td>{_e(p.get('why') or '')}</td></tr>"
        )
    return (
        '<table id="points-table"><thead><tr><th scope="col">point</th>'
        '<th scope="col">sessions</th><th scope="col">outcome</th><th scope="col">p50 ms</th>'
        '<th scope="col">p95 ms</th><th scope="col">p99 ms</th>'
        '<th scope="col">inference p95 ms</th><th scope="col">inferences/s</th>'
        '<th scope="col">batch mean</th><th scope="col">why</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )


def render(doc: dict[str, Any]) -> str:
    """The page's HTML text."""
    figs = [
        _figure(pareto_figure(doc), "pareto", "No valid point with throughput: no Pareto plot."),
        _figure(latency_load_figure(doc), "latency-vs-load", "No latency measured yet."),
        _figure(
            batch_figure(doc), "batch-size", "No TorchServe batch figures (TorchServe not used)."
        ),
    ]
    budget = doc["budget"]
    constraints = "".join(f"<li><code>{_e(c)}</code></li>" for c in doc["constraints"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="signflow-harness sweep report">
<title>Sweep {_e(doc["name"])}</title><style>{CSS}</style></head>
<body data-status="{_e(doc["status"])}">
<h1>Sweep {_e(doc["name"])}</h1>
<p class="meta"><span>{_e(doc["started_at"])} - {_e(doc["finished_at"])}</span>
<span>status {_e(doc["status"])}</span> <span>{budget["runs_used"]} runs,
{budget["minutes_used"]:.1f} min (budget {budget["max_runs"]} runs,
{budget["max_minutes"]:g} min)</span> <span>stack starts {doc["stack_starts"]}
(restarts {doc["stack_restarts"]})</span></p>
<p>{_e(doc.get("description") or "")}</p>
{_rec_block(doc)}
<p>Objective: {doc["objective"]["direction"]} <code>{_e(doc["objective"]["metric"])}</code>.
Constraints (a point meets them when every one passes):</p><ul>{constraints}</ul>
<h2 id="configurations">Configurations</h2>
{_config_table(doc)}
<h2 id="figures">Figures</h2>
{"".join(figs)}
<h2 id="points">Every point</h2>
<p>Each point is an ordinary run folder (results.json, junit.xml, report.html).</p>
{_points_table(doc)}
</body></html>
"""


def write_report(doc: dict[str, Any], path: Path) -> Path:
    """Write sweep.html for ``doc`` (sweep.json's content) at ``path``; returns the path."""
    text = render(doc)
    assert not re.search(r"""(src|href)=["']https?://""", text)  # self-contained by construction
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


__all__: Sequence[str] = ("render", "write_report")
