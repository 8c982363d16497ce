"""Write and read results.json (strict JSON: NaN/inf become null, never fake numbers)."""

from __future__ import annotations

import enum
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.redact import mask

from .model import Results
from .schema import check_document, upgrade


def _clean(obj: Any) -> Any:
    if isinstance(obj, enum.Enum):  # the models' enums (Verdict, InvalidKind): their values
        return _clean(obj.value)
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _clean(obj.item())
    return obj


def results_document(results: Results) -> dict[str, Any]:
    """``results`` as the JSON document results.json holds: the model's dump (every key given
    to it, in the model's order; NaN and inf null)."""
    doc: dict[str, Any] = _clean(results.model_dump(by_alias=True, exclude_unset=True))
    return doc


def write_results(run_dir: Path, results: Results) -> Path:
    """Write ``run_dir/results.json`` (:func:`results_document`) atomically (temp file +
    rename); returns its path.

    Secrets are masked on the way out (harness.redact), whatever the caller passed.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    text = json.dumps(mask(results_document(results)), indent=1, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_results(path: Path) -> Results:
    """Read and check a results.json (version 1 or 2, returned as version 2: ``upgrade``);
    ValueError names the file and what is wrong. The one reader of results files: every
    other layer gets :class:`Results`."""
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
        return Results.model_validate(upgrade(doc))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        what = f"{where}: {err['msg']}" if where else str(err["msg"])
        raise ValueError(f"{path}: not a results document: {what}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
