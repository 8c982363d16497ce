"""Distributed load on Locust (``workload.engine: locust``): the same run, from many machines.

Locust is the control plane only: a master started by the harness (coordinator.py) and workers
(local processes, ``harness worker --master HOST:PORT`` elsewhere, or docker-compose.loadgen.yml)
talking ZeroMQ with custom messages (messages.py). The data plane stays the harness's own
generator, run per worker in a plain process (engine.py) for an explicit block of sessions,
scheduled from the master's t0. The workers' rows are merged into one ordinary LoadResult
(merge.py), so results.json, the report, gates and faults read a distributed run like any other.

Never import locust (nor locustfile.py) here or anywhere in the harness's own process: it
monkeypatches the whole process with gevent. This package's modules other than locustfile.py
import no Locust.
"""

from harness.load.distributed.coordinator import (
    LOCUSTFILE,
    DistributedLiveStats,
    DistributedLoad,
    DistributedLoadError,
    worker_command,
)
from harness.load.distributed.merge import (
    WORKER_LOST,
    DistributedLoadResult,
    WorkerOutcome,
    merge_worker_results,
)

__all__ = [
    "LOCUSTFILE",
    "WORKER_LOST",
    "DistributedLiveStats",
    "DistributedLoad",
    "DistributedLoadError",
    "DistributedLoadResult",
    "WorkerOutcome",
    "merge_worker_results",
    "worker_command",
]
