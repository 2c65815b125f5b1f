#!/usr/bin/env bash
# Check that a stack's deployments run as its state records: containers running and
# healthy with the stack's images, the pinned Convex version, the backend answering and
# accepting the admin key, recent backups. Exit 0 when all hold, 1 when one does not.
#
#   ./status.sh [stack]        (default: dev)
#
# State backend and passphrase come from ./env.sh (sourced); the checks are
# ops/status.py, run with the virtualenv ./up.sh created.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=env.sh
. ./env.sh || exit 2
if [ ! -x venv/bin/python ]; then
  echo "error: ./venv is missing; ./up.sh creates it (or: python3 -m venv venv &&" \
       "venv/bin/pip install -r requirements.txt)" >&2
  exit 2
fi
exec venv/bin/python -m ops.status "$@"
