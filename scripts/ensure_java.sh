#!/usr/bin/env bash
# TorchServe's frontend is Java: make sure a Java 17+ runtime is on PATH, installing Debian's
# headless JRE when we are root on a Debian-like machine and it is missing.
set -euo pipefail
if command -v java >/dev/null 2>&1; then
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  if [ "${major:-0}" -ge 17 ]; then exit 0; fi
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Java 17 missing: installing openjdk-17-jre-headless" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
  exit 0
fi
echo "TorchServe needs Java 17 or newer on PATH (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)" >&2
exit 1
