#!/usr/bin/env bash
# Run the chat example on the in-memory default: http://127.0.0.1:8000
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh test
exec .venv/bin/nexios run examples.chat.app:app --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" "$@"
