#!/usr/bin/env bash
# Set-up shared by demo.sh and test.sh: a Python 3.11 virtualenv in .venv with the pinned project
# (pyproject.toml + constraints.txt). Idempotent: re-installs only when those files change.
# Spark's JVM packages (Delta) are fetched from Maven Central by Spark itself on first use and
# cached in ~/.ivy2.5.2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
fi
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' \
  || { echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
command -v java >/dev/null 2>&1 || { echo "error: Java 17 is required by Spark (java not on PATH)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> installing pinned dependencies into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
