#!/usr/bin/env bash
# Set up and deploy a stack (default: dev) on the local Docker engine, with Pulumi state
# in a local file backend (./.pulumi-state). Usage: ./up.sh [stack] [extra `pulumi up` args]
set -euo pipefail
cd "$(dirname "$0")"
stack="${1:-dev}"
shift || true

command -v pulumi >/dev/null || {
  echo "error: the Pulumi CLI is not installed; see https://www.pulumi.com/docs/install/" >&2
  exit 1
}
if [ -z "${DOCKER_HOST:-}" ] && ! docker info >/dev/null 2>&1; then
  echo "error: no Docker engine answers (docker info failed); start Docker first" >&2
  exit 1
fi

# State stays on this machine unless PULUMI_BACKEND_URL says otherwise.
mkdir -p .pulumi-state
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$PWD/.pulumi-state}"
# The passphrase encrypts secrets in state. Without one given, generate one per checkout,
# kept beside the state (mode 600, git-ignored) so no prompt ever stops a newcomer.
if [ -z "${PULUMI_CONFIG_PASSPHRASE+x}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  if [ ! -s .pulumi-state/passphrase ]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > .pulumi-state/passphrase)
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE="$PWD/.pulumi-state/passphrase"
fi

if [ ! -x venv/bin/python ]; then
  python3 -m venv venv
fi
venv/bin/python -m pip install --quiet --upgrade pip
venv/bin/python -m pip install --quiet -r requirements.txt

pulumi stack select --create "$stack" --secrets-provider passphrase
pulumi up --yes --stack "$stack" "$@"
echo
echo "Outputs (secrets hidden; add --show-secrets to see them):"
pulumi stack output --stack "$stack"
