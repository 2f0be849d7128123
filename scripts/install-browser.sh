#!/usr/bin/env bash
# Install what the browser tests need: Debian's chromium and Playwright's Python package.
# Idempotent: skips what is already there. Never downloads a browser through Playwright
# (no `playwright install`): the tests drive /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/chromium ]]; then
  sudo=""
  if [[ "$(id -u)" != "0" ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi

if ! .venv/bin/python -c "import playwright" 2>/dev/null; then
  .venv/bin/pip install -q playwright
fi

/usr/bin/chromium --version
.venv/bin/python -c "from importlib.metadata import version; print('playwright', version('playwright'))"
