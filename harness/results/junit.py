"""JUnit XML for CI systems: one testcase per gate, plus one error testcase when the run did not
produce a trustworthy measurement (``measurement valid`` for an INVALID run, ``run completed``
for a run that ended in an error: the stack failed to start, or it was interrupted)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.redact import mask

from .model import reason_text

INVALID_CASE = "measurement valid"
ERROR_CASE = "run completed"


def wall_time_s(doc: Mapping[str, Any]) -> float | None:
    """Seconds from ``started_at`` to ``finished_at`` (None when either is missing or bad)."""
    try:
        start = datetime.fromisoformat(str(doc["started_at"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(doc["finished_at"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, (end - start).total_seconds())


def _problem_case(suite: ET.Element, name: str, doc: Mapping[str, Any]) -> None:
    """The error testcase: INVALID measurement, or a run that ended in an error."""
    reasons = [reason_text(r) for r in doc.get("invalid_reasons") or []]
    error = doc.get("error")
    if error or doc.get("verdict") == "error":
        case_name, kind = ERROR_CASE, ("interrupted" if error == "interrupted" else "error")
        reasons = [str(error or "run error"), *reasons]
    else:
        case_name, kind = INVALID_CASE, "invalid"
    case = ET.SubElement(suite, "testcase", classname=f"harness.{name}", name=case_name)
    err = ET.SubElement(case, "error", message="; ".join(reasons)[:500], type=kind)
    err.text = "\n".join(reasons)


def junit_tree(doc: Mapping[str, Any]) -> ET.ElementTree:
    """The XML tree: testsuite ``harness.<name>`` with one testcase per gate.

    ``time`` is the run's wall time (started_at .. finished_at, stack start-up included), not the
    configured load duration. Secrets are masked (harness.redact).
    """
    doc = mask(doc)
    name = str(doc.get("name") or "run")
    gates = list(doc.get("gates") or [])
    suite = ET.Element("testsuite", name=f"harness.{name}")
    props = ET.SubElement(suite, "properties")
    for key in ("run_id", "verdict"):
        ET.SubElement(props, "property", name=key, value=str(doc.get(key)))
    failures = errors = 0
    if doc.get("valid", True) is False or doc.get("verdict") == "error":
        errors += 1
        _problem_case(suite, name, doc)
    for gate in gates:
        case = ET.SubElement(
            suite, "testcase", classname=f"harness.{name}.gates", name=str(gate.get("expr"))
        )
        if not gate.get("passed"):
            failures += 1
            fail = ET.SubElement(
                case, "failure", message=str(gate.get("reason") or "gate failed"), type="gate"
            )
            fail.text = (
                f"metric {gate.get('metric')} measured {gate.get('measured')!r}, "
                f"threshold {gate.get('threshold')!r}"
            )
    suite.set("tests", str(len(gates) + errors))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("time", f"{wall_time_s(doc) or 0.0:.3f}")
    return ET.ElementTree(suite)


def write_junit(run_dir: Path, doc: Mapping[str, Any]) -> Path:
    """Write ``run_dir/junit.xml``; returns its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "junit.xml"
    tree = junit_tree(doc)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
