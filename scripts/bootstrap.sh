#!/usr/bin/env bash
# Create the virtualenv (if missing) and install nexios with the given extras. Idempotent.
#   ./scripts/bootstrap.sh test,bench,browser              # .venv, with python3
#   VENV=.venv-3.12 PYTHON=python3.12 ./scripts/bootstrap.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
venv="${VENV:-.venv}"
python="${PYTHON:-python3}"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.installed-${extras//,/-}"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[${extras}]"
  touch "$stamp"
fi
