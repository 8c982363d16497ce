#!/usr/bin/env python
"""Container health = the model's default version has a READY worker.

TorchServe's /ping says Healthy before the model can answer. The management key expires
(token_expiration_min); the project's management client renews it through the token API with
the key file's API key, so the check keeps working past expiry.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, "/usr/local/lib/signflow")
from serving.management import ManagementClient, TorchServeError, read_key_file_text

KEY_FILE = Path("/home/model-server/keys/key_file.json")


def read_keys() -> dict | None:
    try:
        return read_key_file_text(KEY_FILE.read_bytes())
    except OSError:
        return None


def main() -> int:
    api = ManagementClient("http://127.0.0.1:8081", read_keys)
    try:
        running = api.running_config()
    except (TorchServeError, OSError, ValueError) as exc:
        print(f"not ready: {exc}")
        return 1
    print(f"{running.ready_workers}/{running.workers} workers READY, version {running.version}")
    return 0 if running.ready_workers else 1


if __name__ == "__main__":
    sys.exit(main())
