"""``harness sweep``: find the TorchServe configuration and the capacity, with a recommendation.

``load_sweep(path)`` reads and checks a sweep file into a :class:`Plan`; ``run_sweep(plan, out)``
runs it (one stack per configuration, one run folder per point) and writes sweep.json and
sweep.html; ``emit_config(doc, dir)`` writes the recommended configuration's files.
"""

from .emit import emit_config
from .execute import SCHEMA, SCHEMA_VERSION, run_sweep
from .loader import Configuration, Plan, SweepError, load_sweep

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "Configuration",
    "Plan",
    "SweepError",
    "emit_config",
    "load_sweep",
    "run_sweep",
]
