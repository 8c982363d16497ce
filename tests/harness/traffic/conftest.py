"""tests/harness/traffic: the helpers next to the tests are importable (cohorts.py), and so is
tests/backend_server.py (a real backend in a subprocess)."""

from __future__ import annotations

import sys
from pathlib import Path

for folder in (Path(__file__).resolve().parent, Path(__file__).resolve().parents[2]):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
