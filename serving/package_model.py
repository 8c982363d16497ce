"""Build the TorchServe archive ``signflow-<version>.mar`` from a trained model directory.

``python -m serving.package_model --version 1.0 --models build/models --out build/model-store``

The archive holds the TorchScript model, the handler, labels.json, metadata.json, the four
shared ML modules (top-level inside the archive) and a model-config.yaml with the batching
settings. It is written under a temporary directory and renamed into place, so a crash never
leaves a half-written archive where TorchServe or make would pick it up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from string import Template

from serving.settings import TorchServeSettings, arg_help, arg_type

MODEL_NAME = "signflow"
SERVING_DIR = Path(__file__).resolve().parent
REPO_ROOT = SERVING_DIR.parent
HANDLER = SERVING_DIR / "handler.py"
MODEL_CONFIG_TEMPLATE = SERVING_DIR / "config" / "model-config.yaml"
ML_DIR = REPO_ROOT / "backend_patch" / "app" / "ml"
ML_MODULES = ("features.py", "feature_engineering.py", "dataset.py", "predictions.py")
REQUEST_PARSER = SERVING_DIR / "request_parser.py"
ARTIFACTS = ("model.pt", "labels.json", "metadata.json")


class PackagingError(RuntimeError):
    """The archive could not be built; the message names the missing or bad file."""


# The archive's batching options (the one settings type holds their ranges and defaults).
CLI_OPTIONS = {
    "batch_size": "--batch-size",
    "max_batch_delay_ms": "--max-batch-delay",
    "response_timeout_s": "--response-timeout",
}


def render_model_config(settings: TorchServeSettings, torch_threads: int = 0) -> str:
    """Fill the model-config.yaml template with ``settings``' batching (no worker count: see
    the template) and ``torch_threads`` (0 = the handler's default, 1 per worker on CPU)."""
    return Template(MODEL_CONFIG_TEMPLATE.read_text()).substitute(
        batch_size=settings.batch_size,
        max_batch_delay=settings.max_batch_delay_ms,
        response_timeout=settings.response_timeout_s,
        torch_threads=torch_threads,
    )


def _check_inputs(model_dir: Path, version: str) -> None:
    for name in ARTIFACTS:
        if not (model_dir / name).is_file():
            raise PackagingError(f"{model_dir / name}: missing (train the model first)")
    for name in ML_MODULES:
        if not (ML_DIR / name).is_file():
            raise PackagingError(f"{ML_DIR / name}: missing shared ML module")
    meta_path = model_dir / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise PackagingError(f"{meta_path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if str(meta.get("version")) != version:
        raise PackagingError(
            f"{meta_path}: field 'version' is {meta.get('version')!r}, expected {version!r}"
        )


def build_archive(
    version: str,
    models_dir: Path,
    out_dir: Path,
    settings: TorchServeSettings | None = None,
    torch_threads: int = 0,
) -> Path:
    """Build ``out_dir/signflow-<version>.mar`` atomically and return its path; its
    model-config.yaml carries ``settings``' batching (default: ``TorchServeSettings()``)."""
    settings = settings or TorchServeSettings()
    model_dir = models_dir / version
    _check_inputs(model_dir, version)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{MODEL_NAME}-{version}.mar"
    # The temp dir sits next to the target so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(prefix=".package-", dir=out_dir) as tmp:
        tmp_dir = Path(tmp)
        config = tmp_dir / "model-config.yaml"
        config.write_text(render_model_config(settings, torch_threads))
        extra = [str(ML_DIR / m) for m in ML_MODULES] + [str(REQUEST_PARSER)]
        extra += [str(model_dir / "labels.json"), str(model_dir / "metadata.json")]
        cmd = [
            sys.executable,
            "-m",
            "model_archiver.model_packaging",
            "--model-name",
            MODEL_NAME,
            "--version",
            version,
            "--serialized-file",
            str(model_dir / "model.pt"),
            "--handler",
            str(HANDLER),
            "--extra-files",
            ",".join(extra),
            "--config-file",
            str(config),
            "--export-path",
            str(tmp_dir),
            "--force",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        built = tmp_dir / f"{MODEL_NAME}.mar"
        if proc.returncode != 0 or not built.is_file():
            raise PackagingError(
                f"torch-model-archiver failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        built.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints the archive path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, help="model version, e.g. 1.0")
    parser.add_argument("--models", type=Path, default=Path("build/models"))
    parser.add_argument("--out", type=Path, default=Path("build/model-store"))
    for field, option in CLI_OPTIONS.items():
        # Unset options stay None: the settings' own defaults apply.
        parser.add_argument(option, dest=field, type=arg_type(field), help=arg_help(field))
    args = parser.parse_args(argv)
    settings = TorchServeSettings(
        **{f: getattr(args, f) for f in CLI_OPTIONS if getattr(args, f) is not None}
    )
    try:
        path = build_archive(args.version, args.models, args.out, settings)
    except PackagingError as exc:
        print(f"package_model: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
