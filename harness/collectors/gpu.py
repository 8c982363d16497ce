"""GpuCollector: per-second GPU utilisation and memory through NVML (nvidia-ml-py's pynvml).

With no NVIDIA GPU (or no driver) the collector says so: ``present`` is False and ``reason``
explains why; its series then holds no values at all, never a fake 0 %.
"""

from __future__ import annotations

import contextlib
from typing import Any


class GpuCollector:
    """Samples every visible GPU; series: t, util_percent, mem_used_mb (sums/means over GPUs)."""

    name = "gpu"

    def __init__(self) -> None:
        self.present = False
        self.reason: str | None = None
        self.names: list[str] = []
        self.memory_total_mb: list[float] = []
        self.errors = 0
        self.last_error: str | None = None
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._t: list[float] = []
        self._util: list[float | None] = []
        self._mem: list[float | None] = []
        self._per_gpu_util: list[list[float | None]] = []
        self._init()

    def _init(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            self.reason = f"nvidia-ml-py not installed ({exc})"
            return
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self.reason = f"no NVIDIA GPU found (NVML: {exc})"
            return
        try:
            count = pynvml.nvmlDeviceGetCount()
            if count == 0:
                self.reason = "NVML initialised but reports 0 GPUs"
                pynvml.nvmlShutdown()
                return
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            for h in self._handles:
                name = pynvml.nvmlDeviceGetName(h)
                self.names.append(name.decode() if isinstance(name, bytes) else str(name))
                self.memory_total_mb.append(pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**20)
        except Exception as exc:
            self.reason = f"NVML query failed: {exc}"
            self._handles = []
            pynvml.nvmlShutdown()
            return
        self._nvml = pynvml
        self.present = True
        self._per_gpu_util = [[] for _ in self._handles]

    async def baseline(self) -> None:
        """NVML utilisation is already a per-interval figure: nothing to prime."""

    async def sample(self, t: float, dt: float) -> None:
        """Record utilisation (mean over GPUs, %) and memory used (sum, MB) for window t."""
        if not self.present:
            return
        self._t.append(t)
        utils: list[float] = []
        mem = 0.0
        try:
            for i, h in enumerate(self._handles):
                u = float(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu)
                utils.append(u)
                self._per_gpu_util[i].append(u)
                mem += self._nvml.nvmlDeviceGetMemoryInfo(h).used / 2**20
        except Exception as exc:  # a failed read is a gap, not a zero
            self.errors += 1
            self.last_error = str(exc)[:300]
            self._util.append(None)
            self._mem.append(None)
            for per in self._per_gpu_util:
                if len(per) < len(self._t):
                    per.append(None)
            return
        self._util.append(sum(utils) / len(utils))
        self._mem.append(mem)

    def series(self) -> dict[str, Any]:
        """``{"present", "reason", "names", "memory_total_mb", "t", "util_percent",
        "mem_used_mb", "util_percent_per_gpu", "errors"}``; empty lists when absent."""
        return {
            "present": self.present,
            "reason": self.reason,
            "names": list(self.names),
            "memory_total_mb": list(self.memory_total_mb),
            "t": list(self._t),
            "util_percent": list(self._util),
            "mem_used_mb": list(self._mem),
            "util_percent_per_gpu": [list(p) for p in self._per_gpu_util],
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def summary(self, t_from: float = 0.0, t_to: float = float("inf")) -> dict[str, Any]:
        """The results' ``summary.gpu`` block over windows in [t_from, t_to)."""
        keep = [i for i, t in enumerate(self._t) if t_from <= t < t_to]
        util = sorted(u for i in keep if (u := self._util[i]) is not None)
        mem = [m for i in keep if (m := self._mem[i]) is not None]
        return {
            "present": self.present,
            "reason": self.reason,
            "name": ", ".join(self.names) if self.names else None,
            "util_mean": sum(util) / len(util) if util else None,
            "util_p95": util[min(int(0.95 * len(util)), len(util) - 1)] if util else None,
            "memory_used_mb_max": max(mem) if mem else None,
        }

    async def close(self) -> None:
        """Shut NVML down."""
        if self._nvml is not None:
            with contextlib.suppress(Exception):  # already shut down: nothing to release
                self._nvml.nvmlShutdown()
            self._nvml = None
