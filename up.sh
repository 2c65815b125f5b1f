#!/usr/bin/env bash
# Deploy a stack (default: dev): show the preview, then apply once confirmed.
#
#   ./up.sh [stack] [--yes|-y] [other `pulumi up` arguments]
#
# 1. State backend and passphrase come from ./env.sh (sourced): this checkout's
#    .pulumi-state/ unless PULUMI_BACKEND_URL / PULUMI_CONFIG_PASSPHRASE(_FILE) are set.
# 2. Selects the stack, creating it (passphrase secrets provider) if it does not exist.
# 3. On the Docker target (not host, kubernetes), checks the Docker engine the stack
#    deploys to: the stack's `docker:host` config, else
#    DOCKER_HOST, else the local engine (a remote host needs no local engine). It must
#    answer; below API 1.44 (Engine 25) a warning says the backend healthcheck's
#    start_interval is ignored there, so Docker's own status of a first start lags.
# 4. Installs requirements.txt into ./venv (the virtualenv Pulumi.yaml names).
#    CONVEX_SELFHOST_SKIP_INSTALL=1 skips this step (offline re-runs; the tests).
# 5. Recovers from an interrupted run (ops/recover.py): clears the lock of a
#    `pulumi` process that no longer runs, adopts what Docker created meanwhile.
# 6. `pulumi up --refresh` (unless you pass --refresh=false): it reads
#    every container back from Docker first, so one removed or stopped outside Pulumi is
#    recreated. It shows its preview first. At a terminal (stdin and stdout)
#    it then asks before applying. Without one (CI, pipes, --non-interactive) pass --yes;
#    otherwise only the preview runs and the script exits 1. Dev stacks (`dev`, `dev-*`,
#    unqualified) apply without asking and without the separate preview
#    (--skip-preview): nobody approves it, and the update prints each change as it makes it.
#    Up to $PULUMI_PARALLEL (default 32) resource operations run at once (see below).
# The stack is the first argument; `--stack X`/`-s X` among the others must name the same
# stack (or are the only ones naming it). `--cwd`/`-C` and `--config-file` are refused.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

die() {
  echo "error: $*" >&2
  exit 1
}

# The stack this run operates on is decided here, once, and passed to every pulumi call
# as `--stack`: a stack selector among the other arguments either names the same stack
# or is refused, so the confirmation rule below always judges the stack pulumi uses.
stack="" stack_from=""
choose_stack() {  # $1: a stack name, $2: where it came from
  if [ -n "$stack" ] && [ "$1" != "$stack" ]; then
    die "two different stacks: '$stack' ($stack_from) and '$1' ($2). Name one stack," \
        "as the first argument: ./up.sh <stack> [pulumi up arguments]"
  fi
  stack="$1" stack_from="$2"
}
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  choose_stack "$1" "the first argument"
  shift
fi
yes=0 interactive=1 refresh=1
args=()
while [ $# -gt 0 ]; do
  arg="$1"
  shift
  case "$arg" in
    --yes|-y) yes=1; continue ;;
    --non-interactive) interactive=0 ;;
    --refresh|--refresh=*|-r|-r=*) refresh=0 ;;  # the caller decides
    --stack|-s)
      [ $# -gt 0 ] || die "$arg needs a stack name"
      choose_stack "$1" "$arg"
      shift
      continue ;;
    --stack=*) choose_stack "${arg#--stack=}" "--stack="; continue ;;
    -s?*) choose_stack "${arg#-s}" "-s"; continue ;;
    --cwd|--cwd=*|-C*|--config-file|--config-file=*)
      die "'$arg' would make pulumi use another project or stack configuration than the" \
          "one this script checks; run pulumi directly for that" ;;
    --*) ;;
    -*)
      # A cluster of short flags (pflag reads -ysprod as -y -s prod): walk it like pulumi
      # does; a flag that takes a value ends the cluster (the rest is its value).
      cluster="${arg#-}"
      while [ -n "$cluster" ]; do
        case "$cluster" in
          s*|C*) die "'$arg' selects a stack or directory inside a cluster of short flags;" \
                     "name the stack as the first argument: ./up.sh <stack> ..." ;;
          [cmptv]*) break ;;
        esac
        cluster="${cluster#?}"
      done ;;
  esac
  args+=("$arg")
done
stack="${stack:-dev}"

# Stack names as pulumi takes them: name, org/name or org/project/name, each part made
# of letters, digits, '-', '_' and '.' (and never '.' or '..': they are not names).
# shellcheck source=scripts/stack-name.sh
. scripts/stack-name.sh
if ! is_stack_name "$stack"; then
  die "'$stack' is not a stack name: use letters, digits, '-', '_' and '.', optionally" \
      "qualified as org/project/stack (at most 100 characters)"
fi
# Refresh first, so what happened outside Pulumi is seen and repaired: a container removed
# or stopped by hand, or left stopped by a Docker restart, is recreated.
[ "$refresh" = 0 ] || args=(--refresh "${args[@]+"${args[@]}"}")
# pulumi asks only when both stdin and stdout are terminals.
[ -t 0 ] && [ -t 1 ] || interactive=0
skip_preview=()
case "$stack" in  # only this project's own dev stacks, named without an org or project
  # Applied without asking, so a preview first would only run the program and ask every
  # provider twice (1.3 s for one deployment, 2.5 s for ten); a failing program still
  # stops before any change, and the update shows each change as it makes it.
  dev|dev-*) yes=1 skip_preview=(--skip-preview) ;;
esac
# Pulumi's default (4 per CPU: 8 on 2 cores) is sized for CPU-bound providers. Here almost
# every operation waits on the Docker engine (a network's `docker network create`, a
# container create waits for it to run), so ten deployments' 30-odd independent operations
# would queue behind each other (the health waits run in the program, outside these
# slots). --parallel/-p or PULUMI_PARALLEL still decide.
default_parallel=32
export PULUMI_PARALLEL="${PULUMI_PARALLEL:-$default_parallel}"

command -v pulumi >/dev/null ||
  die "the Pulumi CLI is not installed; see https://www.pulumi.com/docs/install/"

# shellcheck source=env.sh
. ./env.sh || exit 1

# The health gates are Stash resources (pulumi:index:Stash), which the CLI knows from
# 3.208 on; an older one would fail the first `up` with "unrecognized resource type".
cli_version="$(pulumi version 2>/dev/null || true)"
case "$cli_version" in
  v[0-2].*|v3.[0-9].*|v3.[0-9][0-9].*|v3.1[0-9][0-9].*|v3.20[0-7].*)
    die "the Pulumi CLI is $cli_version; this project needs 3.208 or newer; see" \
        "https://www.pulumi.com/docs/install/" ;;
esac

pulumi stack select --create "$stack" --secrets-provider passphrase

# Only a Docker-target stack needs an engine; host and kubernetes stacks reach their
# machines through their providers (SSH, the cluster's API), which report what fails.
target="$(pulumi config get convex-selfhost:target --stack "$stack" 2>/dev/null || true)"
if [ "${target:-docker}" = docker ]; then
  # The engine the Docker provider will talk to: the stack's docker:host wins over DOCKER_HOST.
  docker_host="$(pulumi config get docker:host --stack "$stack" 2>/dev/null || true)"
  if [ -n "$docker_host" ]; then
    where="the Docker engine at $docker_host (the stack's docker:host)"
  elif [ -n "${DOCKER_HOST:-}" ]; then
    docker_host="$DOCKER_HOST"
    where="the Docker engine at $docker_host (DOCKER_HOST)"
  else
    where="the local Docker engine"
  fi
  docker_cmd=(docker)
  [ -z "$docker_host" ] || docker_cmd+=(-H "$docker_host")

  if ! command -v docker >/dev/null; then
    if [ -n "$docker_host" ]; then
      echo "warning: no docker CLI on this machine, so $where was not checked" >&2
    else
      die "no docker CLI and no docker:host: install Docker Engine 25+, or deploy to a remote" \
          "engine with \`pulumi config set docker:host ssh://user@host --stack $stack\`"
    fi
  elif ! answer="$("${docker_cmd[@]}" version --format '{{.Server.APIVersion}}' 2>&1)"; then
    reason="$(printf '%s\n' "$answer" | grep -v '^[[:space:]]*$' | tail -n 1)"
    if [ -n "$docker_host" ]; then
      die "$where does not answer: \`${docker_cmd[*]} version\` failed${reason:+ ($reason)}." \
          "Check the host is up, runs Docker, and that you can reach it" \
          "(for ssh://: \`ssh <user@host> docker version\` works without a password prompt)."
    fi
    die "$where does not answer: \`docker version\` failed${reason:+ ($reason)}. Start Docker," \
        "or deploy to a remote engine: \`pulumi config set docker:host ssh://user@host --stack $stack\`."
  else
    api="$(printf '%s\n' "$answer" | grep -E '^[0-9]+\.[0-9]+' | tail -n 1 || true)"
    major="${api%%.*}" minor="${api#*.}"
    minor="${minor%%.*}"
    if [ -z "$api" ]; then
      echo "warning: could not read the API version of $where; Docker Engine 25+ is expected" >&2
    elif [ "$major" -lt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -lt 44 ]; }; then
      echo "warning: $where speaks Docker API $api, below 1.44 (Docker Engine 25)." \
           "It ignores the backend healthcheck's start_interval, so Docker probes a first start" \
           "at the normal interval instead of every second: \`docker ps\` shows a started" \
           "backend healthy later (\`pulumi up\` runs the healthcheck itself and is not" \
           "slowed), nothing breaks. Upgrade to Docker Engine 25+ to fix it." >&2
    fi
  fi
else
  echo "target $target: no Docker engine needed on this machine"
fi

if [ "${CONVEX_SELFHOST_SKIP_INSTALL:-}" != 1 ]; then
  if [ ! -x venv/bin/python ]; then
    python3 -m venv venv
  fi
  venv/bin/python -m pip install --quiet --upgrade pip
  venv/bin/python -m pip install --quiet -r requirements.txt
fi

# A run that was killed leaves its lock and "pending creates" behind, and the next one
# would fail on them; clear the lock of a dead process and adopt what Docker made.
if [ -x venv/bin/python ]; then
  venv/bin/python -m ops.recover "$stack" ||
    die "stack '$stack' could not be recovered from an interrupted run (see above)"
fi

if [ "$yes" = 1 ]; then
  # --yes skips the question, not the preview: pulumi up prints it before updating.
  pulumi up --yes ${skip_preview[@]+"${skip_preview[@]}"} --stack "$stack" \
    ${args[@]+"${args[@]}"}
elif [ "$interactive" = 1 ]; then
  pulumi up --stack "$stack" ${args[@]+"${args[@]}"}  # previews, then asks
else
  pulumi preview --stack "$stack" ${args[@]+"${args[@]}"}
  echo >&2
  die "not applied: no terminal to confirm at (stdin or stdout is not a terminal, or" \
      "--non-interactive), so nobody can approve the update of stack '$stack'. Review the" \
      "preview above, then re-run with --yes to apply it: ./up.sh $stack --yes"
fi
echo
echo "Outputs (secrets hidden; add --show-secrets to see them):"
pulumi stack output --stack "$stack"
