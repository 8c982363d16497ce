"""The numpy-only modules import as top-level modules, as inside the TorchServe archive."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ML = Path(__file__).resolve().parents[2] / "backend_patch" / "app" / "ml"
MODULES = ("features.py", "feature_engineering.py", "dataset.py", "predictions.py")


def test_modules_work_top_level_without_torch(tmp_path: Path) -> None:
    for name in MODULES:
        shutil.copy(ML / name, tmp_path / name)
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "import numpy as np\n"
        "import feature_engineering, predictions\n"
        "w = feature_engineering.build_window(np.zeros((5, 225), dtype=np.float32))\n"
        "assert w.shape == (64, 469)\n"
        "p = predictions.softmax_top_k(np.zeros((1, 2)), ['a', 'b'], 1.0)\n"
        "assert p[0]['prediction'] == 'a'\n"
        "assert 'torch' not in sys.modules and 'backend_patch' not in sys.modules\n"
    )
    # -I: the repository is not on sys.path; only the copied modules are.
    subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, check=True, timeout=60)
