#!/usr/bin/env bash
# Print the path of a Python interpreter of the given version (e.g. 3.12): python3.12 on
# the PATH, else the newest pyenv build of it ($PYENV_ROOT or ~/.pyenv). Fails with
# what to install when there is none.
set -euo pipefail
version="${1:?usage: find-python.sh 3.12}"
if found="$(command -v "python$version" 2>/dev/null)" && "$found" -c 'import sys' 2>/dev/null; then
  echo "$found"
  exit 0
fi
root="${PYENV_ROOT:-$HOME/.pyenv}"
best="$(ls -d "$root"/versions/"$version".*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)"
if [[ -z "$best" ]]; then
  echo "find-python: no Python $version (looked for python$version on the PATH and in $root/versions). Install it, e.g. 'pyenv install $version'." >&2
  exit 1
fi
echo "$best"
