"""Train the sign classifier on synthetic data and write a versioned artifact directory.

    python -m backend_patch.app.ml.train --version 1.0 --out build/models/1.0

The recipe (seed, epochs, preset, data sizes) of each version lives in RECIPES, so ``--version``
alone is enough; 1.0 and 2.0 differ by seed and epochs so their outputs differ observably.
Training windows are built exactly like the backend builds them (normalize_landmarks per frame,
then build_window) from signs cut the way its motion segmenter cuts them: random leading and
trailing rest frames and a small truncation. The held-out split uses other seeds, hence other
signers. The artifact directory is written to a temporary sibling and renamed into place, so a
half-built artifact never exists.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .feature_engineering import FEATURE_DIM, SEQ_LEN, build_window
from .features import normalize_landmarks
from .model import PRESETS, SignTransformer, count_parameters, sha256_file
from .synthetic import SIGN_CLASSES, sample_segment

# Offset between the training and the held-out seeds: other signers, other performances.
HELDOUT_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a model version."""

    seed: int
    epochs: int
    preset: str = "default"
    train_per_class: int = 30
    heldout_per_class: int = 12
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.02
    label_smoothing: float = 0.05
    temperature: float = 1.0


RECIPES: dict[str, Recipe] = {
    "1.0": Recipe(seed=1, epochs=4),
    "2.0": Recipe(seed=2, epochs=5),
}


@dataclass
class TrainResult:
    """What training produced: the eval-mode model and its figures."""

    model: SignTransformer
    heldout_accuracy: float
    train_seconds: float
    heldout_windows: np.ndarray
    heldout_labels: np.ndarray


def make_windows(
    per_class: int, seed: int, labels: Sequence[str] = SIGN_CLASSES
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` segmented synthetic signs per label -> (windows [N, 64, 469], ids [N])."""
    rng = np.random.default_rng(seed)
    windows = np.empty((per_class * len(labels), SEQ_LEN, FEATURE_DIM), dtype=np.float32)
    ids = np.empty(per_class * len(labels), dtype=np.int64)
    i = 0
    for _ in range(per_class):
        for cls, label in enumerate(labels):
            frames = sample_segment(label, rng)
            windows[i] = build_window(np.stack([normalize_landmarks(f) for f in frames]))
            ids[i] = cls
            i += 1
    return windows, ids


def evaluate(model: nn.Module, windows: np.ndarray, ids: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of ``model`` on windows/ids."""
    model.eval()
    correct = 0
    with torch.inference_mode():
        for s in range(0, len(ids), batch):
            logits = model(torch.from_numpy(windows[s : s + batch]))
            correct += int((logits.argmax(dim=1).numpy() == ids[s : s + batch]).sum())
    return correct / max(len(ids), 1)


def train(recipe: Recipe, labels: Sequence[str] = SIGN_CLASSES, log: Any = print) -> TrainResult:
    """Generate data, train the preset, return the eval-mode model and its held-out accuracy."""
    start = time.perf_counter()
    torch.manual_seed(recipe.seed)
    x_train, y_train = make_windows(recipe.train_per_class, recipe.seed, labels)
    x_held, y_held = make_windows(
        recipe.heldout_per_class, recipe.seed + HELDOUT_SEED_OFFSET, labels
    )
    log(
        f"data: {len(y_train)} train / {len(y_held)} held-out windows"
        f" in {time.perf_counter() - start:.1f}s"
    )

    model = SignTransformer(len(labels), recipe.preset)
    flat = torch.from_numpy(x_train).reshape(-1, FEATURE_DIM)
    model.set_normalization(flat.mean(dim=0), flat.std(dim=0))
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    steps_per_epoch = -(-len(yt) // recipe.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch, pct_start=0.15
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    gen = torch.Generator().manual_seed(recipe.seed)
    for epoch in range(recipe.epochs):
        model.train()
        perm = torch.randperm(len(yt), generator=gen)
        total = 0.0
        for s in range(0, len(yt), recipe.batch_size):
            idx = perm[s : s + recipe.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {epoch + 1}/{recipe.epochs}: loss {total / len(yt):.4f}")
    model.eval()
    acc = evaluate(model, x_held, y_held)
    return TrainResult(model, acc, time.perf_counter() - start, x_held, y_held)


def script_model(model: SignTransformer, check: np.ndarray) -> torch.jit.ScriptModule:
    """TorchScript of the eval model; RuntimeError if it disagrees with eager on ``check``."""
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices: TorchServe still needs it
        scripted = torch.jit.script(model)
    with torch.inference_mode():
        x = torch.from_numpy(check)
        eager, script = model(x), scripted(x)
    if not torch.allclose(eager, script, atol=1e-4, rtol=1e-4):
        diff = float((eager - script).abs().max())
        raise RuntimeError(f"scripted model disagrees with eager (max abs diff {diff:.3g})")
    return scripted


def write_artifacts(
    out: Path, version: str, recipe: Recipe, result: TrainResult, labels: Sequence[str]
) -> dict[str, Any]:
    """Write model.pt, labels.json, metadata.json atomically into ``out``; return the metadata."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        scripted = script_model(result.model, result.heldout_windows[:32])
        scripted.save(str(tmp / "model.pt"))
        (tmp / "labels.json").write_text(json.dumps(list(labels), indent=1) + "\n")
        metadata = {
            "version": version,
            "preset": recipe.preset,
            "seq_len": SEQ_LEN,
            "feature_dim": FEATURE_DIM,
            "num_classes": len(labels),
            "temperature": recipe.temperature,
            "seed": recipe.seed,
            "epochs": recipe.epochs,
            "heldout_accuracy": round(result.heldout_accuracy, 4),
            "heldout_samples": len(result.heldout_labels),
            "train_samples": recipe.train_per_class * len(labels),
            "num_parameters": count_parameters(result.model),
            "train_seconds": round(result.train_seconds, 1),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "sha256": {name: sha256_file(tmp / name) for name in ("model.pt", "labels.json")},
        }
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return metadata


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exits non-zero when held-out accuracy is below --min-accuracy."""
    parser = argparse.ArgumentParser(description="Train the sign classifier on synthetic data.")
    parser.add_argument(
        "--version", required=True, help=f"model version; recipes: {', '.join(RECIPES)}"
    )
    parser.add_argument("--out", required=True, type=Path, help="artifact directory to (re)write")
    parser.add_argument(
        "--seed", type=int, help="override the recipe's seed (required for other versions)"
    )
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="override the recipe's preset")
    parser.add_argument(
        "--train-per-class", type=int, help="override the training samples per class"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument(
        "--min-accuracy", type=float, default=0.95, help="fail below this held-out top-1"
    )
    args = parser.parse_args(argv)

    recipe = RECIPES.get(args.version)
    if recipe is None:
        if args.seed is None or args.epochs is None:
            parser.error(
                f"--version {args.version}: no recipe (known: {', '.join(RECIPES)});"
                " give --seed and --epochs"
            )
        recipe = Recipe(seed=args.seed, epochs=args.epochs)
    overrides = {
        k: v
        for k, v in {
            "seed": args.seed,
            "epochs": args.epochs,
            "preset": args.preset,
            "train_per_class": args.train_per_class,
        }.items()
        if v is not None
    }
    recipe = replace(recipe, **overrides)
    torch.set_num_threads(max(1, args.threads))
    print(f"training {args.version}: {recipe}", flush=True)
    result = train(recipe, SIGN_CLASSES, log=lambda m: print(m, flush=True))
    print(
        f"version {args.version}: held-out accuracy {result.heldout_accuracy:.4f} "
        f"({len(result.heldout_labels)} windows), train {result.train_seconds:.1f}s",
        flush=True,
    )
    if result.heldout_accuracy < args.min_accuracy:
        # Nothing is written: a stale-but-good artifact beats a fresh bad one, and make retries.
        print(
            f"error: held-out accuracy below {args.min_accuracy}; {args.out} not written",
            file=sys.stderr,
        )
        return 1
    write_artifacts(args.out, args.version, recipe, result, SIGN_CLASSES)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
