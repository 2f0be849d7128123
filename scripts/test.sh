#!/usr/bin/env bash
# The test command: installs what the tests need into .venv, then lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh test,bench,peers,browser
.venv/bin/ruff check nexios tests examples bench
.venv/bin/ruff format --check nexios tests examples bench
.venv/bin/mypy
exec .venv/bin/pytest -q "$@"
