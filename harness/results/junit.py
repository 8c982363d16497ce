"""JUnit XML for CI systems: one testcase per gate; an INVALID run adds an error testcase."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def junit_tree(doc: Mapping[str, Any]) -> ET.ElementTree:
    """The XML tree: testsuite ``harness.<name>`` with one testcase per gate."""
    name = str(doc.get("name") or "run")
    gates = list(doc.get("gates") or [])
    suite = ET.Element("testsuite", name=f"harness.{name}")
    props = ET.SubElement(suite, "properties")
    for key in ("run_id", "verdict"):
        ET.SubElement(props, "property", name=key, value=str(doc.get(key)))
    failures = errors = 0
    duration = (doc.get("summary") or {}).get("duration_s") or 0
    if not doc.get("valid", True) or doc.get("verdict") == "error":
        errors += 1
        case = ET.SubElement(
            suite, "testcase", classname=f"harness.{name}", name="measurement valid"
        )
        reasons = list(doc.get("invalid_reasons") or []) or [str(doc.get("error") or "run error")]
        err = ET.SubElement(case, "error", message="; ".join(reasons)[:500], type="invalid")
        err.text = "\n".join(reasons)
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
    suite.set("time", f"{float(duration):.3f}")
    return ET.ElementTree(suite)


def write_junit(run_dir: Path, doc: Mapping[str, Any]) -> Path:
    """Write ``run_dir/junit.xml``; returns its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "junit.xml"
    tree = junit_tree(doc)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
