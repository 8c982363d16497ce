#!/usr/bin/env python
"""Register the model of this container through TorchServe's management API, then exit.

Run detached by the entrypoint while TorchServe starts. Settings come from the environment
(MODEL_VERSION, TS_TOKEN_AUTH, SIGNFLOW_BATCH_SIZE, SIGNFLOW_MAX_BATCH_DELAY_MS,
SIGNFLOW_WORKERS, SIGNFLOW_RESPONSE_TIMEOUT_S: ``serving.settings.ENV_NAMES``), read and
range-checked by the project's one settings type, and applied by its management client (both
copied into the image from serving/), so the container and the harness register the same way.
A bad value stops the registrar with a message naming the variable and its range; the health
check then never turns healthy.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, "/usr/local/lib/signflow")
from serving.management import ManagementClient, TorchServeError, read_key_file_text
from serving.settings import TorchServeSettings

KEY_FILE = Path("/home/model-server/keys/key_file.json")
START_TIMEOUT_S = 240.0


def read_keys() -> dict | None:
    try:
        return read_key_file_text(KEY_FILE.read_bytes())
    except OSError:
        return None


def main() -> int:
    try:
        settings = TorchServeSettings.from_env(os.environ)
    except ValueError as exc:
        print(f"signflow-register: {exc}", file=sys.stderr, flush=True)
        return 2
    version = settings.model_version
    token_auth = settings.token_auth
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
