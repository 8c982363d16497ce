"""The sign classifier (a Transformer encoder over [B, 64, 469] windows) and artifact loading.

Artifacts (``build/models/<version>/``): ``model.pt`` (TorchScript of the eval model),
``labels.json`` and ``metadata.json`` with the sha256 of both; see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .feature_engineering import FEATURE_DIM, SEQ_LEN


@dataclass(frozen=True)
class Preset:
    """Model size: width, heads, layers, feed-forward width, dropout."""

    d_model: int
    nhead: int
    num_layers: int
    dim_feedforward: int
    dropout: float = 0.1


PRESETS: dict[str, Preset] = {
    # For tests: trains in seconds, still the same architecture.
    "tiny": Preset(d_model=32, nhead=2, num_layers=1, dim_feedforward=64, dropout=0.1),
    # About 0.33 M parameters; a batch-16 forward is a few ms on a 2-core CPU.
    "default": Preset(d_model=128, nhead=4, num_layers=2, dim_feedforward=256, dropout=0.1),
}


class SignTransformer(nn.Module):
    """Transformer encoder classifier: [B, seq_len, feature_dim] float32 -> logits [B, C].

    Input standardisation (per-feature mean/std, set from the training data with
    :meth:`set_normalization`) is part of the module, so it travels inside ``model.pt`` and both
    inference paths feed raw ``build_window`` output.
    """

    def __init__(
        self,
        num_classes: int,
        preset: Preset | str = "default",
        seq_len: int = SEQ_LEN,
        feature_dim: int = FEATURE_DIM,
    ) -> None:
        super().__init__()
        p = PRESETS[preset] if isinstance(preset, str) else preset
        self.seq_len = seq_len
        self.feature_dim = feature_dim
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_std", torch.ones(feature_dim))
        self.proj = nn.Linear(feature_dim, p.d_model)
        self.pos = nn.Parameter(torch.zeros(1, seq_len, p.d_model))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=p.d_model,
            nhead=p.nhead,
            dim_feedforward=p.dim_feedforward,
            dropout=p.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=p.num_layers, enable_nested_tensor=False
        )
        self.norm = nn.LayerNorm(p.d_model)
        self.head = nn.Linear(p.d_model, num_classes)

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the per-feature standardisation (std floored so constant features stay finite)."""
        # Buffers read through nn.Module.__getattr__, typed "Tensor | Module" (and no class
        # annotation: TorchScript compiles this class and refuses one).
        self.feature_mean.copy_(mean.to(self.feature_mean))  # type: ignore[operator, arg-type]
        self.feature_std.copy_(std.to(self.feature_std).clamp_min(1e-3))  # type: ignore[operator, arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] for windows ``x`` [B, seq_len, feature_dim]."""
        x = (x - self.feature_mean) / self.feature_std  # type: ignore[operator]
        h = self.proj(x) + self.pos
        h = self.encoder(h)
        return self.head(self.norm(h.mean(dim=1)))  # type: ignore[no-any-return]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def select_device(prefer: str | None = None) -> torch.device:
    """``prefer`` if given (e.g. ``"cpu"``), else CUDA when available, else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class ArtifactError(RuntimeError):
    """A model artifact directory is missing a file, or a file does not match its sha256."""


@dataclass
class LoadedModel:
    """A loaded artifact: the TorchScript module (eval mode), class labels, metadata, device."""

    module: torch.jit.ScriptModule
    labels: list[str]
    metadata: dict[str, Any]
    device: torch.device

    @property
    def version(self) -> str:
        """The artifact's model version (metadata ``version``)."""
        return str(self.metadata.get("version", ""))

    @property
    def temperature(self) -> float:
        """Softmax temperature from the metadata (1.0 if absent)."""
        return float(self.metadata.get("temperature", 1.0))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_artifacts(directory: str | Path, device: str | torch.device | None = None) -> LoadedModel:
    """Load ``model.pt``, ``labels.json`` and ``metadata.json`` from ``directory``.

    Every file listed in ``metadata["sha256"]`` is verified first; raises ArtifactError naming
    the file on a missing file, a mismatch or inconsistent metadata.
    """
    root = Path(directory)
    meta_path = root / "metadata.json"
    if not meta_path.is_file():
        raise ArtifactError(
            f"{meta_path}: missing (build it with `make build/models/<v>/metadata.json`)"
        )
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{meta_path}: unreadable ({exc})") from exc
    hashes = metadata.get("sha256")
    if not isinstance(hashes, dict) or not {"model.pt", "labels.json"} <= hashes.keys():
        raise ArtifactError(f"{meta_path}: 'sha256' must list model.pt and labels.json")
    for name, expected in hashes.items():
        path = root / name
        if not path.is_file():
            raise ArtifactError(f"{path}: missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(f"{path}: sha256 mismatch (expected {expected}, got {actual})")
    labels = json.loads((root / "labels.json").read_text())
    if not isinstance(labels, list) or not all(isinstance(s, str) for s in labels):
        raise ArtifactError(f"{root / 'labels.json'}: expected a list of strings")
    if metadata.get("num_classes", len(labels)) != len(labels):
        raise ArtifactError(
            f"{meta_path}: num_classes {metadata.get('num_classes')} != {len(labels)} labels"
        )
    dev = select_device(str(device)) if device is not None else select_device()
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but TorchServe loads TorchScript.
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(root / "model.pt"), map_location=dev)  # type: ignore[no-untyped-call]
    module.eval()
    return LoadedModel(module=module, labels=labels, metadata=metadata, device=dev)


def predict_logits(loaded: LoadedModel, windows: np.ndarray) -> np.ndarray:
    """Logits float32 [B, C] for ``windows`` [B, 64, 469] (a single [64, 469] is one row)."""
    arr = np.asarray(windows, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    expected = (
        loaded.metadata.get("seq_len", SEQ_LEN),
        loaded.metadata.get("feature_dim", FEATURE_DIM),
    )
    if arr.ndim != 3 or tuple(arr.shape[1:]) != tuple(expected):
        raise ValueError(f"windows: expected [B, {expected[0]}, {expected[1]}], got {arr.shape}")
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(arr)).to(loaded.device)
        logits: np.ndarray = loaded.module(x).float().cpu().numpy()
        return logits
