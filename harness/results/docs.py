"""The generated parts of docs/RESULTS.md, from the results model (harness/results/model.py).

``python -m harness.results.docs`` rewrites each ``<!-- generated: NAME -->`` ...
``<!-- end generated -->`` block of docs/RESULTS.md; ``--check`` exits 1 when a block differs
(tests/harness/test_results_model.py runs the same check). Blocks: ``metrics`` (the gate metric
catalogue: pattern, unit, k6-style type, meaning, timeline needs), ``invalid`` (the kinds of
INVALID reason) and ``sections`` (the fields of the run's other sections: rollout, aborted,
sessions, load, summary.traffic, with type and unit).
"""

from __future__ import annotations

import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

from pydantic import BaseModel

from .model import (
    METRICS,
    AbortRecord,
    CohortFigures,
    CohortLatency,
    CohortPair,
    CostSpread,
    InvalidKind,
    LifetimeSpread,
    LoadDistribution,
    LoadMaster,
    LoadWorker,
    PrometheusRecord,
    QueryRecord,
    RolloutCriterion,
    RolloutJudgement,
    RolloutRecord,
    RolloutStep,
    SessionRecord,
    Traffic,
    Unit,
)

RESULTS_MD = Path(__file__).resolve().parents[2] / "docs" / "RESULTS.md"
_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[a-z]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S
)

_INVALID_ABOUT = {
    InvalidKind.FELL_BEHIND: "more than 1 % of frames sent later than late_threshold_ms "
    "(measured: late share; limit 0.01)",
    InvalidKind.CPU_SATURATED: "the generator's process used >= 95 % of one core "
    "(measured, limit: %)",
    InvalidKind.SUT_STOPPED_READING: "frames could not be sent or got no reply within "
    "reply_timeout_s (measured: those frames; limit: reply_timeout_s, s)",
    InvalidKind.OVER_RANGE: "replies slower than reply_timeout_s, outside the histograms "
    "(measured: the slowest, ms; limit: ms)",
    InvalidKind.TIMELINE_EVENT: "a timeline event failed or did not run",
    InvalidKind.INTERRUPTED: "Ctrl-C/SIGTERM/SIGHUP (measured: seconds covered; limit: planned)",
    InvalidKind.WORKER_LOST: "engine locust: a load worker exited, stalled or never reported "
    "(its sessions' frames counted lost)",
    InvalidKind.OTHER: "a version-1 reason the reader could not place",
}


def metrics_table() -> str:
    """The gate metric catalogue as a Markdown table."""
    rows = ["| metric | unit | type | meaning | needs |", "|---|---|---|---|---|"]
    for m in METRICS:
        needs = " + ".join(m.needs)
        rows.append(f"| `{m.pattern}` | {m.unit} | {m.type} | {m.about} | {needs} |")
    return "\n".join(rows) + "\n"


def invalid_table() -> str:
    """The kinds of INVALID reason as a Markdown table."""
    rows = ["| kind | when |", "|---|---|"]
    rows += [f"| `{k.value}` | {_INVALID_ABOUT[k]} |" for k in InvalidKind]
    return "\n".join(rows) + "\n"


# The sections documented field by field, as (where in results.json, model).
SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("summary.traffic", Traffic),
    ("summary.traffic.lifetime_s", LifetimeSpread),
    ("summary.traffic.connect_ms, close_ms", CostSpread),
    ("rollout", RolloutRecord),
    ("rollout.steps[]", RolloutStep),
    ("rollout.steps[].judgements[]", RolloutJudgement),
    ("...judgements[].criteria[]", RolloutCriterion),
    ("...judgements[].figures", CohortPair),
    ("...figures.torchserve, local", CohortFigures),
    ("...figures.*.frame_latency_ms, inference_latency_ms", CohortLatency),
    ("aborted", AbortRecord),
    ("sessions[]", SessionRecord),
    ("load", LoadDistribution),
    ("load.workers[]", LoadWorker),
    ("load.master", LoadMaster),
    ("prometheus", PrometheusRecord),
    ("prometheus.queries[]", QueryRecord),
)


def type_text(annotation: object) -> str:
    """A field's type in JSON words: ``number``, ``integer``, ``string``, ``a | b`` for a
    Literal, ``list of X``, a model's name, ``| null`` when it may be null."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return type_text(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        parts = [type_text(a) for a in args if a is not type(None)]
        return " \\| ".join(parts) + (" \\| null" if type(None) in args else "")
    if origin is Literal:
        return " \\| ".join(f'"{v}"' for v in get_args(annotation))
    if origin is list:
        return f"list of {type_text(get_args(annotation)[0])}"
    if origin is dict:
        return f"object of {type_text(get_args(annotation)[1])}"
    names = {float: "number", int: "integer", str: "string", bool: "boolean"}
    if isinstance(annotation, type):
        return names.get(annotation) or f"`{annotation.__name__}`"
    return "any"


def _unit(annotation: object) -> Unit | None:
    if get_origin(annotation) is typing.Annotated:
        return next((m for m in get_args(annotation)[1:] if isinstance(m, Unit)), None)
    return None


def sections_table() -> str:
    """The fields of the non-summary sections (and summary.traffic) as Markdown tables."""
    out: list[str] = []
    for where, model in SECTIONS:
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        doc = doc.replace("``", "`")
        out += [f"`{where}` (`{model.__name__}`): {doc}", "", "| field | type | unit | meaning |",
                "|---|---|---|---|"]  # fmt: skip
        hints = typing.get_type_hints(model, include_extras=True)
        for name, info in model.model_fields.items():
            unit = _unit(hints[name])
            about = unit.about if unit is not None else (info.description or "")
            out.append(
                f"| `{name}` | {type_text(hints[name])} | {unit.unit if unit else ''} | {about} |"
            )
        out.append("")
    return "\n".join(out)


BLOCKS: dict[str, Callable[[], str]] = {
    "metrics": metrics_table,
    "invalid": invalid_table,
    "sections": sections_table,
}


def render(text: str) -> str:
    """``text`` with every generated block rewritten (KeyError names an unknown block)."""

    def block(m: re.Match[str]) -> str:
        return m[1] + BLOCKS[m["name"]]() + m[4]

    return _BLOCK.sub(block, text)


def stale_blocks(path: Path = RESULTS_MD) -> list[str]:
    """Names of the blocks of ``path`` that differ from the model, and those missing."""
    text = path.read_text(encoding="utf-8")
    found = {m["name"]: m["body"] for m in _BLOCK.finditer(text)}
    return [name for name, make in BLOCKS.items() if found.get(name) != make()]


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/RESULTS.md's generated blocks (``--check``: only say whether they differ)."""
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        stale = stale_blocks()
        for name in stale:
            sys.stderr.write(f"{RESULTS_MD}: block '{name}' is stale or missing\n")
        return 1 if stale else 0
    RESULTS_MD.write_text(render(RESULTS_MD.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
