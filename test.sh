#!/usr/bin/env bash
# Install the project and its test tools into a virtualenv, lint, and run the test suite.
# Usage: ./test.sh [pytest args]   (VENV=path chooses the virtualenv, default .venv-test)
set -euo pipefail
cd "$(dirname "$0")"
venv="${VENV:-.venv-test}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r requirements-dev.txt -r policy/requirements.txt
"$venv/bin/python" -m ruff check .
exec "$venv/bin/python" -m pytest "$@"
