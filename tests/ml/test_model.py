"""SignTransformer shapes, artifact loading and its sha256 check, and the built artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from backend_patch.app.ml.model import (
    PRESETS,
    ArtifactError,
    SignTransformer,
    count_parameters,
    load_artifacts,
    predict_logits,
    select_device,
)
from backend_patch.app.ml.synthetic import SIGN_CLASSES
from backend_patch.app.ml.train import Recipe, make_windows, train, write_artifacts

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_shapes(preset: str) -> None:
    model = SignTransformer(7, preset).eval()
    with torch.inference_mode():
        out = model(torch.zeros(3, 64, 469))
    assert out.shape == (3, 7)
    if preset == "default":
        assert 200_000 < count_parameters(model) < 600_000


def test_select_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device().type == expected
    assert select_device("cpu").type == "cpu"


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    labels = list(SIGN_CLASSES[:3])
    recipe = Recipe(seed=5, epochs=1, preset="tiny", train_per_class=2, heldout_per_class=1)
    result = train(recipe, labels, log=lambda _m: None)
    out = tmp_path_factory.mktemp("art") / "0.1"
    write_artifacts(out, "0.1", recipe, result, labels)
    return out


def test_artifact_roundtrip(tiny_artifact: Path) -> None:
    loaded = load_artifacts(tiny_artifact, device="cpu")
    meta = json.loads((tiny_artifact / "metadata.json").read_text())
    for key in (
        "version",
        "preset",
        "seq_len",
        "feature_dim",
        "num_classes",
        "temperature",
        "seed",
        "epochs",
        "heldout_accuracy",
        "train_seconds",
        "created_at",
        "sha256",
    ):
        assert key in meta
    assert loaded.labels == list(SIGN_CLASSES[:3]) and loaded.version == "0.1"
    logits = predict_logits(loaded, np.zeros((2, 64, 469), dtype=np.float32))
    assert logits.shape == (2, 3) and logits.dtype == np.float32
    assert not list(tiny_artifact.parent.glob(".*tmp*"))  # atomic write left nothing behind
    with pytest.raises(ValueError, match="windows"):
        predict_logits(loaded, np.zeros((2, 10, 469), dtype=np.float32))


def test_sha256_mismatch_names_the_file(tiny_artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    (copy / "labels.json").write_text('["x", "y", "z"]\n')
    with pytest.raises(ArtifactError, match=r"labels\.json: sha256 mismatch"):
        load_artifacts(copy)
    (copy / "model.pt").unlink()
    with pytest.raises(ArtifactError, match=r"model\.pt: missing"):
        load_artifacts(copy)
    with pytest.raises(ArtifactError, match=r"metadata\.json: missing"):
        load_artifacts(tmp_path / "nowhere")


def _built(version: str) -> Path:
    path = REPO / "build" / "models" / version
    if not (path / "metadata.json").is_file():
        pytest.skip(f"{path} not built (run `make build/models/{version}/metadata.json`)")
    return path


@pytest.fixture(scope="module")
def fresh_heldout() -> tuple[np.ndarray, np.ndarray]:
    # A seed no recipe uses: new signers and performances.
    return make_windows(6, seed=424242)


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_built_artifacts_are_accurate(version: str, fresh_heldout: tuple) -> None:
    loaded = load_artifacts(_built(version), device="cpu")
    assert loaded.labels == list(SIGN_CLASSES)
    windows, ids = fresh_heldout
    acc = float((predict_logits(loaded, windows).argmax(axis=1) == ids).mean())
    assert acc >= 0.95, f"{version}: accuracy {acc:.3f} on a fresh held-out batch"


def test_built_versions_differ(fresh_heldout: tuple) -> None:
    a = load_artifacts(_built("1.0"), device="cpu")
    b = load_artifacts(_built("2.0"), device="cpu")
    assert a.metadata["sha256"]["model.pt"] != b.metadata["sha256"]["model.pt"]
    la = predict_logits(a, fresh_heldout[0][:8])
    lb = predict_logits(b, fresh_heldout[0][:8])
    assert np.abs(la - lb).max() > 1e-3
