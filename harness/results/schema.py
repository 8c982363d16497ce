"""Checks of a results document's shape (docs/RESULTS.md); the types are harness.results.model.

``schema_version`` 2 (structured INVALID reasons, the histograms' unit); version-1 files are
read too: :func:`upgrade` brings them to version 2 in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import ALWAYS, Results, reason_from_v1
from .model import READABLE_VERSIONS as READABLE_VERSIONS
from .model import SCHEMA as SCHEMA
from .model import SCHEMA_VERSION as SCHEMA_VERSION

# Every readable document's top-level keys, in the model's order: its required fields and
# those marked ALWAYS (the model is the one list of keys; docs/RESULTS.md is generated from it).
TOP_KEYS = tuple(
    field.alias or name
    for name, field in Results.model_fields.items()
    if field.is_required() or ALWAYS in field.metadata
)

# The key paths the issue requires to exist in every results document (a requirement on top of
# the model's keys: the model allows a partial summary; a test checks each path is the model's).
REQUIRED_KEY_PATHS = (
    *(f"summary.frame.latency_ms.{k}" for k in ("p50", "p95", "p99", "p999")),
    *(f"summary.inference.latency_ms.{k}" for k in ("p50", "p95", "p99")),
    "summary.throughput.frames_per_s",
    "summary.throughput.inferences_per_s",
    "summary.errors.total",
    "summary.accuracy",
    "summary.served_by.local",
    "summary.served_by.torchserve",
    "gates",
    "verdict",
    "valid",
)

# The gate metric catalogue (every metric a gate may name) is harness.results.model.METRICS.


def get_path(doc: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """(present, value) of a dotted key path."""
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def missing_keys(doc: Mapping[str, Any]) -> list[str]:
    """Top-level keys and required key paths absent from ``doc`` (empty when complete)."""
    out = [k for k in TOP_KEYS if k not in doc]
    out += [p for p in REQUIRED_KEY_PATHS if not get_path(doc, p)[0]]
    return out


def check_document(doc: Mapping[str, Any]) -> None:
    """Raise ValueError naming what is wrong with a results document (used by readers)."""
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"not a harness results document (schema={doc.get('schema')!r})")
    if doc.get("schema_version") not in READABLE_VERSIONS:
        raise ValueError(
            f"results schema_version {doc.get('schema_version')!r} is not supported "
            f"(this harness reads {', '.join(map(str, READABLE_VERSIONS))})"
        )
    missing = missing_keys(doc)
    if missing:
        raise ValueError(f"results document lacks: {', '.join(missing)}")


def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """A checked document brought to the current version, in place (and returned).

    Version 1 -> 2: prose ``invalid_reasons`` become ``{kind, message, ...}`` (kind from the
    prefix version 1 wrote); ``histograms.unit`` is stated (microseconds then as now).
    ``upgraded_from`` records the version read.
    """
    if doc.get("schema_version") == 1:
        doc["invalid_reasons"] = [
            r if isinstance(r, Mapping) else reason_from_v1(str(r)).model_dump(mode="json")
            for r in doc.get("invalid_reasons") or []
        ]
        if isinstance(doc.get("histograms"), dict):
            doc["histograms"].setdefault("unit", "us")
        doc["schema_version"] = SCHEMA_VERSION
        doc["upgraded_from"] = 1
    return doc
