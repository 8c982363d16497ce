"""What the processes of one backend share when BACKEND_WORKERS > 1.

The launcher (``python -m backend_patch``) makes one private directory per run and names it in
``PROMETHEUS_MULTIPROC_DIR`` for its worker processes (they inherit the environment). In it:

- prometheus_client's multiprocess files: every process writes its own metric values, and
  ``/metrics`` in any process reads them all (app/metrics.py);
- :class:`RolloutCell`: the live rollout percent as one 4-byte cell every worker maps, so a
  ``PUT /admin/rollout`` answered by one process applies to the new sessions of all;
- the lock file that serialises key renewals (:func:`renewal_lock`): TorchServe's token API
  invalidates the previous key on each renewal, so two processes renewing at once would each
  invalidate the other's new key; under the lock, the second one finds the file renewed and
  only re-reads it.

With one process (the default) the variable is unset and none of this is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import mmap
import os
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

__all__ = ["MULTIPROC_ENV", "RolloutCell", "renewal_lock", "shared_dir"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable
ROLLOUT_FILE = "rollout-percent.cell"
RENEWAL_LOCK_FILE = "key-renewal.lock"
# A renewal takes one management API call (bounded at 5 s in the client): waiting longer than
# this for another process's means something is stuck; renew anyway rather than never.
RENEWAL_LOCK_WAIT_S = 10.0
_CELL = struct.Struct("<i")


def shared_dir() -> Path | None:
    """The directory shared by this backend's processes, None when it runs as one process."""
    value = os.environ.get(MULTIPROC_ENV, "").strip()
    return Path(value) if value else None


class RolloutCell:
    """The rollout percent (int 0..100) in a file mapped into every process.

    A 4-byte aligned store is atomic on the platforms we run on, so readers never see a torn
    value; the last ``set`` wins, as with one process.
    """

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, _CELL.size)
        finally:
            os.close(fd)

    @classmethod
    def create(cls, directory: Path, percent: int) -> Path:
        """Write the initial cell in ``directory`` (the launcher, before starting workers)."""
        path = directory / ROLLOUT_FILE
        path.write_bytes(_CELL.pack(percent))
        return path

    @classmethod
    def attach(cls) -> RolloutCell | None:
        """The cell of this backend's shared directory, None with one process."""
        directory = shared_dir()
        if directory is None or not (directory / ROLLOUT_FILE).exists():
            return None
        return cls(directory / ROLLOUT_FILE)

    def get(self) -> int:
        return int(_CELL.unpack_from(self._map, 0)[0])

    def set(self, percent: int) -> None:
        _CELL.pack_into(self._map, 0, percent)


@contextlib.asynccontextmanager
async def renewal_lock() -> AsyncIterator[None]:
    """Hold the backend-wide key renewal lock (a no-op with one process).

    Polls a non-blocking ``flock`` so that waiting never blocks the event loop and stays
    cancellable; gives up waiting after RENEWAL_LOCK_WAIT_S (logged by the caller's outcome).
    """
    directory = shared_dir()
    if directory is None:
        yield
        return
    fd = os.open(directory / RENEWAL_LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = time.monotonic() + RENEWAL_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock
