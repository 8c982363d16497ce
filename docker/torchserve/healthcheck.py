#!/usr/bin/env python
"""Container health = the model's workers are READY (TorchServe's /ping says Healthy earlier)."""

import json
import sys
import urllib.request
from pathlib import Path

MODEL = "signflow"
KEY_FILE = Path("/home/model-server/keys/key_file.json")


def main() -> int:
    request = urllib.request.Request(f"http://127.0.0.1:8081/models/{MODEL}")
    if KEY_FILE.exists():
        key = json.loads(KEY_FILE.read_text())["management"]["key"]
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            versions = json.load(response)
    except (OSError, ValueError) as exc:
        print(f"not ready: {exc}")
        return 1
    ready = any(w.get("status") == "READY" for v in versions for w in v.get("workers", []))
    print("ready" if ready else "no READY worker yet")
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
