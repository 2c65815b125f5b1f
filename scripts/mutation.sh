#!/usr/bin/env bash
# Mutation testing (slow; not part of CI): break one behaviour of the program at a time
# and check that the test suite notices. Usage: scripts/mutation.sh [glob ...]
#   scripts/mutation.sh "components.rules.*" "components.settings.runtime.*"
# (mutant names are module paths; with none it mutates everything under components/). Results: `mutmut results`,
# one mutant's change: `mutmut show <name>`. Needs the test virtualenv (./test.sh once).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv-test}"
[ -x "$venv/bin/python" ] || { echo "error: run ./test.sh once first (it creates $venv)" >&2; exit 1; }
"$venv/bin/python" -m pip install --quiet "mutmut==3.8.1"
rm -rf mutants
args=()
for glob in "$@"; do args+=("$glob"); done
"$venv/bin/mutmut" run "${args[@]}" || true
"$venv/bin/mutmut" results
