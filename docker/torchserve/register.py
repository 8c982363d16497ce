#!/usr/bin/env python
"""Register the model of this container through TorchServe's management API, then exit.

Run detached by the entrypoint while TorchServe starts. Settings come from the environment:
MODEL_VERSION, SIGNFLOW_BATCH_SIZE, SIGNFLOW_MAX_BATCH_DELAY_MS, SIGNFLOW_WORKERS,
SIGNFLOW_RESPONSE_TIMEOUT_S. It uses the project's own management client (copied into the image
from serving/management.py), so the container and the harness register the same way.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, "/usr/local/lib/signflow")
from management import (
    BatchSettings,
    ManagementClient,
    TorchServeError,
    read_key_file_text,
)

KEY_FILE = Path("/home/model-server/keys/key_file.json")
START_TIMEOUT_S = 240.0


def read_keys() -> dict | None:
    try:
        return read_key_file_text(KEY_FILE.read_bytes())
    except OSError:
        return None


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"signflow-register: {name}={raw!r} is not an integer") from None
    if value < (0 if name == "SIGNFLOW_MAX_BATCH_DELAY_MS" else 1):
        raise SystemExit(f"signflow-register: {name}={value} is out of range")
    return value


def main() -> int:
    version = os.environ.get("MODEL_VERSION", "1.0")
    settings = BatchSettings(
        batch_size=_int_env("SIGNFLOW_BATCH_SIZE", 16),
        max_batch_delay_ms=_int_env("SIGNFLOW_MAX_BATCH_DELAY_MS", 50),
        workers=_int_env("SIGNFLOW_WORKERS", 2),
        response_timeout_s=_int_env("SIGNFLOW_RESPONSE_TIMEOUT_S", 30),
    )
    token_auth = os.environ.get("TS_TOKEN_AUTH", "true") != "false"
    api = ManagementClient("http://127.0.0.1:8081", read_keys if token_auth else None)
    deadline = time.monotonic() + START_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        if token_auth and read_keys() is None:
            time.sleep(0.2)
            continue
        try:
            if version not in api.versions():
                api.register(f"signflow-{version}.mar", version, settings)
            else:
                api.scale(version, settings.workers)
            print(f"signflow-register: signflow {version} registered: {settings}", flush=True)
            return 0
        except TorchServeError as exc:
            if exc.status not in (None, 404):
                print(f"signflow-register: {exc}", file=sys.stderr, flush=True)
                return 1
            last = str(exc)
        except OSError as exc:  # not listening yet
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.3)
    print(f"signflow-register: gave up after {START_TIMEOUT_S:.0f} s: {last}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
