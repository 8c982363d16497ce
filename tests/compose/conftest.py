"""Compose tests need a Docker engine and the local images; they skip with the reason otherwise.

`.ci/run` starts dockerd and builds the local base images before `make test`, so in CI they run.
"""

from __future__ import annotations

import pytest

from harness.stack.base import StackError
from harness.stack.compose import detect_compose_cli, docker_client

LOCAL_BASES = ("signflow/python-base:local", "signflow/torchserve-base:local")


@pytest.fixture(scope="session")
def docker_engine():
    """The Docker SDK client, or skip when no engine / no compose CLI / no local base image."""
    try:
        client = docker_client()
        detect_compose_cli()
    except StackError as exc:
        pytest.skip(f"no Docker engine here: {str(exc).splitlines()[0]}")
    for image in LOCAL_BASES:
        try:
            client.images.get(image)
        except Exception:
            pytest.skip(f"local base image {image} missing: run docker/build-local-base.sh")
    return client
