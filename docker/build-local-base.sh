#!/usr/bin/env bash
# Build the local base images for machines that cannot pull from a registry (this project's CI).
#   signflow/debian:bookworm       minbase Debian made with debootstrap (built once, cached)
#   signflow/python-base:local     + python3.11 venv with the pinned CPU torch wheel
#   signflow/torchserve-base:local + Java 17 + torchserve, laid out like pytorch/torchserve
# Users with registry access skip this and build on the official images (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-docker}
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}
wheel_dir=${TORCH_WHEEL_DIR:-/opt/wheels}

if ! $DOCKER image inspect signflow/debian:bookworm >/dev/null 2>&1; then
  rootfs=$(mktemp -d /tmp/signflow-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  echo "debootstrap bookworm from $mirror (once, about 30 s)" >&2
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/tmp/signflow-debootstrap.log 2>&1 \
    || { tail -n 20 /tmp/signflow-debootstrap.log >&2; exit 3; }
  # The image needs the same mirror the host uses, not the default of debootstrap's sources.list.
  echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | $DOCKER import - signflow/debian:bookworm >/dev/null
fi

# The build context holds only what the images need: the torch wheel and the pins.
ctx=build/docker-context
mkdir -p "$ctx/wheels"
wheel=$(ls "$wheel_dir"/torch-2.13.0*cp311*.whl 2>/dev/null | head -1 || true)
if [ -n "$wheel" ]; then
  cp -u "$wheel" "$ctx/wheels/"
fi
cp requirements.lock "$ctx/requirements.lock"
# Extra CA certificates of this host (a TLS-inspecting egress proxy, a corporate CA) so that pip
# inside the build trusts the same package index the host does. Never committed: build/ only.
mkdir -p "$ctx/ca"
cp -u /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true

$DOCKER build -q -t signflow/python-base:local -f docker/base/python-base.Dockerfile "$ctx" >/dev/null
$DOCKER build -q -t signflow/torchserve-base:local -f docker/base/torchserve-base.Dockerfile "$ctx" >/dev/null
echo "local base images ready: signflow/python-base:local signflow/torchserve-base:local" >&2
