"""``--emit-config DIR``: the recommended configuration as files ready to use.

- ``config.properties``: the repository's TorchServe template with the recommended settings'
  keys set (``TorchServeSettings.properties``);
- ``model-config.yaml``: the per-model settings (workers, batch size, delay and response
  timeout: ``TorchServeSettings.per_model``) for ``torch-model-archiver --config-file``;
- ``scenario-stack.yaml``: the scenario ``stack:`` block (``torchserve:`` included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG_TEMPLATE = REPO / "serving" / "config" / "config.properties"


def emit_config(doc: dict[str, Any], out: Path) -> list[Path]:
    """Write the files of ``doc``'s recommendation under ``out``; ValueError without one."""
    from serving.local import render_config
    from serving.settings import TorchServeSettings

    rec = doc.get("recommendation")
    if rec is None:
        raise ValueError("no configuration met the constraints: nothing to emit")
    config = next(c for c in doc["configurations"] if c["id"] == rec["config"])
    stack = config["stack"]
    # The one settings type renders both files (its ranges refuse a damaged sweep document).
    settings = TorchServeSettings.build(**stack["torchserve"])
    out.mkdir(parents=True, exist_ok=True)
    head = f"# harness sweep {doc['name']}: recommended {config['id']} ({config['label']})\n"
    props = out / "config.properties"
    props.write_text(
        head + render_config(CONFIG_TEMPLATE, settings.properties()),
        encoding="utf-8",
    )
    model = out / "model-config.yaml"
    model.write_text(
        head + yaml.safe_dump(settings.per_model(), sort_keys=False),
        encoding="utf-8",
    )
    scenario = out / "scenario-stack.yaml"
    block = {k: v for k, v in stack.items() if k not in ("external", "compose") or v}
    scenario.write_text(head + yaml.safe_dump({"stack": block}, sort_keys=False), encoding="utf-8")
    return [props, model, scenario]
