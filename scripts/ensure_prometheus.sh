#!/usr/bin/env bash
# The monitoring rules are tested with promtool, and a stack may run a real Prometheus server:
# Debian's prometheus package (2.42), installed like Java when we are root and it is missing.
set -euo pipefail
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "prometheus missing: installing Debian's prometheus package (promtool + server)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  exit 0
fi
echo "promtool/prometheus not found: install Debian's 'prometheus' package (apt-get install prometheus)" >&2
exit 1
