"""Write and read results.json (strict JSON: NaN/inf become null, never fake numbers)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.redact import mask

from .schema import check_document, upgrade


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _clean(obj.item())
    return obj


def write_results(run_dir: Path, doc: Mapping[str, Any]) -> Path:
    """Write ``run_dir/results.json`` atomically (temp file + rename); returns its path.

    Secrets are masked on the way out (harness.redact), whatever the caller passed.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps(_clean(mask(doc)), indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    os.replace(tmp, path)
    return path


def read_results(path: Path) -> dict[str, Any]:
    """Read and check a results.json (version 1 or 2, returned as version 2: ``upgrade``);
    ValueError names the file and what is wrong."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read results: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a results document is a JSON object")
    try:
        check_document(doc)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return upgrade(doc)
