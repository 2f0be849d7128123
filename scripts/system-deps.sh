#!/usr/bin/env bash
# The system packages the test suite needs: redis-server (the tests start their own, on
# free ports) and Chromium at /usr/bin/chromium (browser tests, driven by Playwright).
# On Debian and Ubuntu they are installed with apt-get when missing (as root, or with
# sudo when it needs no password). Elsewhere, or without the rights, this prints exactly
# what to install: a missing redis-server fails (exit 1); a missing Chromium only
# warns, as the browser tests then skip. NEXIOS_SKIP_BROWSER=1 leaves Chromium alone.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis)
if [[ "${NEXIOS_SKIP_BROWSER:-0}" != "1" && ! -x /usr/bin/chromium ]]; then
  missing+=(chromium)
fi
[[ ${#missing[@]} -eq 0 ]] && exit 0

os_id="" os_like=""
if [[ -r /etc/os-release ]]; then
  os_id="$(. /etc/os-release && echo "${ID:-}")"
  os_like="$(. /etc/os-release && echo "${ID_LIKE:-}")"
fi
debian=0
if [[ "$os_id" == "debian" || "$os_id" == "ubuntu" || " $os_like " == *" debian "* ]]; then
  debian=1
fi

# apt package names: the Debian "chromium" package gives /usr/bin/chromium. Ubuntu only
# ships Chromium as a snap, which containers cannot run: there it is reported, not installed.
packages=()
for item in "${missing[@]}"; do
  case "$item" in
    redis) packages+=(redis-server) ;;
    chromium) [[ "$os_id" != "ubuntu" ]] && packages+=(chromium) ;;
  esac
done

sudo=""
if [[ "$(id -u)" != "0" ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo"
  else
    sudo="none"
  fi
fi

if [[ $debian -eq 1 && ${#packages[@]} -gt 0 && "$sudo" != "none" ]]; then
  echo "system-deps: installing ${packages[*]} with apt-get" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
fi

status=0
if ! command -v redis-server >/dev/null 2>&1; then
  status=1
  if [[ $debian -eq 1 ]]; then
    echo "system-deps: redis-server is missing. Install it with: sudo apt-get install redis-server" >&2
  else
    echo "system-deps: redis-server is missing. Install Redis 6.2 or newer so that" \
      "'redis-server' is on the PATH (Fedora: sudo dnf install redis;" \
      "macOS: brew install redis; Arch: sudo pacman -S redis)." >&2
  fi
fi
if [[ "${NEXIOS_SKIP_BROWSER:-0}" != "1" && ! -x /usr/bin/chromium ]]; then
  if [[ "$os_id" == "ubuntu" ]]; then
    hint="Ubuntu ships Chromium only as a snap: install Debian's 'chromium' package, or link a Chromium binary to /usr/bin/chromium"
  elif [[ $debian -eq 1 ]]; then
    hint="install it with: sudo apt-get install chromium"
  else
    hint="install Chromium so that /usr/bin/chromium exists"
  fi
  echo "system-deps: warning: /usr/bin/chromium is missing, so the browser tests will be skipped; $hint (or set NEXIOS_SKIP_BROWSER=1)." >&2
fi
exit $status
