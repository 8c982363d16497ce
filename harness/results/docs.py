"""The generated parts of docs/RESULTS.md, from the results model (harness/results/model.py).

``python -m harness.results.docs`` rewrites each ``<!-- generated: NAME -->`` ...
``<!-- end generated -->`` block of docs/RESULTS.md; ``--check`` exits 1 when a block differs
(tests/harness/test_results_model.py runs the same check). Blocks: ``metrics`` (the gate metric
catalogue: pattern, unit, k6-style type, meaning, timeline needs) and ``invalid`` (the kinds of
INVALID reason).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from .model import METRICS, InvalidKind

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


BLOCKS: dict[str, Callable[[], str]] = {"metrics": metrics_table, "invalid": invalid_table}


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
