"""The report's TorchServe time figures say what each covers (issue 11, item 3): queue, the
handler's own time, end to end; results written before the split (``inference_ms_mean``, which
was end to end, queue included) are shown as end to end and never as model time."""

from __future__ import annotations

import copy
import re

from html_inspect import inspect
from report_cases import load_fixture

from harness.report import render_html

LEGACY = "synthetic-fallback-kill.results.json"  # written with inference_ms_mean / ts_inference_ms


def _text(html: str) -> str:
    # Text nodes are joined with spaces: "19.4 ms</strong>: from" reads "19.4 ms : from".
    return re.sub(r"\s+([:;,.])", r"\1", re.sub(r"\s+", " ", inspect(html).text))


def _split_doc() -> dict:
    """The legacy fixture rewritten in today's names, with figures that add up:
    end to end 31.0 = queue 19.35 + handler 6.2 + 5.45 of batch assembly and transfer."""
    doc = copy.deepcopy(load_fixture(LEGACY))
    ts = doc["summary"]["torchserve"]
    del ts["inference_ms_mean"]
    ts.update(queue_ms_mean=19.35, handler_ms_mean=6.2, model_ms_mean=4.1, end_to_end_ms_mean=31.0)
    series = doc["series"]
    queue = series["ts_queue_ms"]
    series["ts_handler_ms"] = [None if q is None else 6.2 for q in queue]
    series["ts_end_to_end_ms"] = [None if q is None else q + 11.65 for q in queue]
    del series["ts_inference_ms"]
    return doc


def test_split_figures_are_named_for_what_they_cover() -> None:
    html = render_html(_split_doc(), None)
    text = _text(html)
    assert "queue 19.4 ms: from arrival until a worker took it" in text
    assert "handler 6.20 ms: the handler's own handle() of the batch it was in" in text
    assert "forward pass (4.10 ms)" in text
    assert "end to end 31.0 ms: from arrival at TorchServe to its answer" in text
    assert "neither queue nor handler: 5.45 ms" in text
    assert "inference time" not in text  # the old, misleading name
    facts = inspect(html)
    (alt,) = [i["alt"] for i in facts.images if "batches TorchServe ran" in i.get("alt", "")]
    for part in ("end to end time (solid)", "queue time (dashed", "handler time (dotted"):
        assert part in alt, alt
    assert "mean handler time 6.20 ms" in alt


def test_results_before_the_split_read_as_end_to_end() -> None:
    doc = load_fixture(LEGACY)
    html = render_html(doc, None)
    text = _text(html)
    e2e = doc["summary"]["torchserve"]["inference_ms_mean"]
    assert f"end to end {e2e:.1f} ms" in text
    assert "call it inference_ms_mean: it includes the queue and is not model time" in text
    assert "handler: not measured by this run's handler" in text
    (alt,) = [i["alt"] for i in inspect(html).images if "batches TorchServe ran" in i["alt"]]
    assert "end to end time (solid)" in alt and "handler time" not in alt
