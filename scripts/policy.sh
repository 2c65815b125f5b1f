#!/usr/bin/env bash
# Preview a stack with the project's policy pack (policy/, Pulumi CrossGuard). Never applies.
#
#   scripts/policy.sh [stack] [other `pulumi preview` arguments]     (default stack: dev)
#
# 1. State backend and passphrase come from env.sh (sourced), as for ./up.sh.
# 2. Installs what the pack and the program need, unless CONVEX_SELFHOST_SKIP_INSTALL=1:
#    policy/venv (the virtualenv policy/PulumiPolicy.yaml names) from
#    policy/requirements.txt, and ./venv (Pulumi.yaml's) from requirements.txt. Without
#    policy/venv, pulumi would wait at "Loading policy packs..." with no message.
# 3. `pulumi preview --policy-pack policy`, bounded by CONVEX_SELFHOST_POLICY_TIMEOUT
#    seconds (default 600). Exit status: pulumi's (a mandatory policy violated is non-zero),
#    or 124 when the preview ran out of time.
set -euo pipefail
repo="$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
  echo "error: $*" >&2
  exit 1
}

stack=dev
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  stack="$1"
  shift
fi
for arg in "$@"; do
  case "$arg" in
    --stack|--stack=*|-s*|--cwd|--cwd=*|-C*|--policy-pack*)
      die "'$arg': name the stack as the first argument (scripts/policy.sh <stack>); the" \
          "policy pack and project directory are this repository's" ;;
  esac
done
# shellcheck source=scripts/stack-name.sh
. "$repo/scripts/stack-name.sh"
if ! is_stack_name "$stack"; then
  die "'$stack' is not a stack name: use letters, digits, '-', '_' and '.', optionally" \
      "qualified as org/project/stack"
fi
timeout="${CONVEX_SELFHOST_POLICY_TIMEOUT:-600}"
[[ "$timeout" =~ ^[1-9][0-9]{0,5}$ ]] ||
  die "CONVEX_SELFHOST_POLICY_TIMEOUT must be a whole number of seconds (1-999999)"

command -v pulumi >/dev/null ||
  die "the Pulumi CLI is not installed; see https://www.pulumi.com/docs/install/"
command -v timeout >/dev/null || die "the \`timeout\` command (coreutils) is not installed"

cd "$repo"
# shellcheck source=../env.sh
. ./env.sh || exit 1

if [ "${CONVEX_SELFHOST_SKIP_INSTALL:-}" != 1 ]; then
  for pair in "policy/venv:policy/requirements.txt" "venv:requirements.txt"; do
    venv="${pair%%:*}" requirements="${pair#*:}"
    if [ ! -x "$venv/bin/python" ]; then
      echo "Creating $venv (once) ..." >&2
      python3 -m venv "$venv" || die "could not create $venv with python3 -m venv" \
        "(on Debian: apt-get install python3-venv)"
    fi
    "$venv/bin/python" -m pip install --quiet -r "$requirements" ||
      die "could not install $requirements into $venv (see pip's message above)"
  done
fi
[ -x policy/venv/bin/python ] ||
  die "policy/venv is missing; run scripts/policy.sh without CONVEX_SELFHOST_SKIP_INSTALL=1"

pulumi stack select "$stack" >/dev/null 2>&1 ||
  die "stack '$stack' does not exist in $PULUMI_BACKEND_URL; create it with ./up.sh $stack"

status=0
timeout --foreground --kill-after=15 "$timeout" \
  pulumi preview --stack "$stack" --policy-pack policy "$@" || status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "error: the policy preview of '$stack' did not finish within ${timeout}s and was" \
       "stopped (raise CONVEX_SELFHOST_POLICY_TIMEOUT, or check that the Docker engine" \
       "answers)" >&2
  exit 124
fi
exit "$status"
