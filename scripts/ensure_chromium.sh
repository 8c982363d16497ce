#!/usr/bin/env bash
# The report tests render the HTML in a real headless browser: Debian's chromium package.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium missing: installing Debian's chromium for the report tests" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  exit 0
fi
echo "headless Chromium not found: install Debian's 'chromium' package to run the browser tests" >&2
exit 1
