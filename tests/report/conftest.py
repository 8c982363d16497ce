"""Fixtures of the report tests (the cases themselves live in report_cases.py)."""

from __future__ import annotations

from report_cases import built_reports

__all__ = ["built_reports"]
