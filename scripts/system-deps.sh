#!/usr/bin/env bash
# The system packages the test suite needs:
#   required: redis-server (the tests start their own, on free ports); node and npm (the
#             browser client's tests run on node's test runner);
#   optional: Chromium at /usr/bin/chromium (browser tests, driven by Playwright) and
#             nginx (the deployment guide's end-to-end test): without them those tests
#             are skipped.
# On Debian and Ubuntu what is missing is installed with apt-get (as root, or with sudo
# when it needs no password). Elsewhere, or without the rights, this prints exactly what
# to install, and fails (exit 1) only for a required one. NEXIOS_SKIP_BROWSER=1 leaves
# Chromium alone.
set -euo pipefail

has() { command -v "$1" >/dev/null 2>&1; }
has_nginx() { has nginx || [[ -x /usr/sbin/nginx ]]; }
want_chromium() { [[ "${NEXIOS_SKIP_BROWSER:-0}" != "1" && ! -x /usr/bin/chromium ]]; }

os_id="" os_like=""
if [[ -r /etc/os-release ]]; then
  os_id="$(. /etc/os-release && echo "${ID:-}")"
  os_like="$(. /etc/os-release && echo "${ID_LIKE:-}")"
fi
debian=0
if [[ "$os_id" == "debian" || "$os_id" == "ubuntu" || " $os_like " == *" debian "* ]]; then
  debian=1
fi

# apt package names. Debian's "chromium" gives /usr/bin/chromium; Ubuntu ships Chromium
# only as a snap, which containers cannot run, so there it is reported, not installed.
packages=()
has redis-server || packages+=(redis-server)
has node || packages+=(nodejs)
has npm || packages+=(npm)
has_nginx || packages+=(nginx)
if want_chromium && [[ "$os_id" != "ubuntu" ]]; then packages+=(chromium); fi
[[ ${#packages[@]} -eq 0 ]] && ! want_chromium && exit 0

sudo=""
if [[ "$(id -u)" != "0" ]]; then
  if has sudo && sudo -n true 2>/dev/null; then sudo="sudo"; else sudo="none"; fi
fi
if [[ $debian -eq 1 && ${#packages[@]} -gt 0 && "$sudo" != "none" ]]; then
  echo "system-deps: installing ${packages[*]} with apt-get" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
fi

status=0
missing() {  # what, required (1/0), Debian package, other systems
  local level="warning" effect="those tests will be skipped"
  if [[ $2 -eq 1 ]]; then level="error" effect="the suite needs it"; status=1; fi
  if [[ $debian -eq 1 ]]; then
    echo "system-deps: $level: $1 is missing ($effect). Install it with: sudo apt-get install $3" >&2
  else
    echo "system-deps: $level: $1 is missing ($effect). Install $4." >&2
  fi
}
has redis-server || missing redis-server 1 redis-server \
  "Redis 6.2 or newer so that 'redis-server' is on the PATH (Fedora: dnf install redis; macOS: brew install redis)"
has node || missing node 1 nodejs "Node.js 18 or newer (node and npm on the PATH)"
has npm || missing npm 1 npm "npm (it comes with Node.js)"
has_nginx || missing nginx 0 nginx "nginx (Fedora: dnf install nginx; macOS: brew install nginx)"
if want_chromium; then
  if [[ "$os_id" == "ubuntu" ]]; then
    echo "system-deps: warning: /usr/bin/chromium is missing (the browser tests will be skipped). Ubuntu ships Chromium only as a snap: install Debian's 'chromium' package or link a Chromium binary to /usr/bin/chromium (or set NEXIOS_SKIP_BROWSER=1)." >&2
  else
    missing /usr/bin/chromium 0 chromium "Chromium so that /usr/bin/chromium exists"
  fi
fi
exit $status
