#!/usr/bin/env bash
# The test command: system packages (scripts/system-deps.sh), the virtualenv, then lint,
# types and the test suite.
#   ./scripts/test.sh                       # python3, in .venv
#   ./scripts/test.sh --python 3.12         # that version (PATH or pyenv), in .venv-3.12
#   ./scripts/test.sh --suite-only -k sse   # no ruff/mypy; the rest goes to pytest
#   ./scripts/test.sh --lint-only           # ruff and mypy, no tests
set -euo pipefail
cd "$(dirname "$0")/.."

version="" lint=1 suite=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --python) version="$2"; shift 2 ;;
    --suite-only) lint=0; shift ;;
    --lint-only) suite=0; shift ;;
    *) break ;;
  esac
done

./scripts/system-deps.sh

python="python3" venv=".venv"
if [[ -n "$version" ]]; then
  python="$(./scripts/find-python.sh "$version")"
  default="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
  if [[ "$version" != "$default" ]]; then venv=".venv-$version"; fi
fi
VENV="$venv" PYTHON="$python" ./scripts/bootstrap.sh test,bench,peers,browser
echo "test.sh: $("$venv/bin/python" --version) in $venv" >&2

if [[ $lint -eq 1 ]]; then
  "$venv/bin/ruff" check nexios tests examples bench
  "$venv/bin/ruff" format --check nexios tests examples bench
  "$venv/bin/mypy"
fi
if [[ $suite -eq 1 ]]; then
  exec "$venv/bin/pytest" -q "$@"
fi
