"""graph_link: the one builder of a Prometheus graph page's URL (results.json's
``prometheus.queries[].link``, judgement.json's ``source.queries[].link``)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from harness.collectors.prometheus_api import PrometheusAPI, graph_link


def test_graph_link_names_the_expression_and_the_interval() -> None:
    link = graph_link("http://127.0.0.1:9090/", "route:signflow_frames:rate1m", 1000.0, 1012.2)
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "127.0.0.1:9090", "/graph")
    q = parse_qs(parts.query)
    assert q["g0.expr"] == ["route:signflow_frames:rate1m"]
    assert q["g0.range_input"] == ["13s"]  # rounded up: the whole interval shown
    assert q["g0.end_input"] == ["1970-01-01 00:16:52"]
    with PrometheusAPI("http://127.0.0.1:9090") as api:  # the client's links are the same
        assert api.graph_link("up", 0.0, 5.0) == graph_link("http://127.0.0.1:9090", "up", 0, 5)


def test_graph_link_masks_a_password_and_refuses_a_non_url() -> None:
    link = graph_link("https://ops:s3cret@prom.example:9090", "up", 0.0, 60.0)
    assert "s3cret" not in link and link.startswith("https://")
    with pytest.raises(ValueError, match="not an http"):
        graph_link("prom.example:9090", "up", 0.0, 60.0)
