# shellcheck shell=bash
# The one place that says where Pulumi state lives and how its secrets are encrypted, for
# every script here and every pulumi command in the README. Source it (bash or zsh), from
# any directory:
#
#   . ./env.sh            (or: . /path/to/convex-selfhost/env.sh)
#
# - PULUMI_BACKEND_URL: kept if set (a team's s3://bucket?region=..., azblob://...,
#   gs://..., file:///shared/path, or https://api.pulumi.com); else this checkout's
#   git-ignored .pulumi-state/ (file://<repo>/.pulumi-state).
# - Passphrase: kept if PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE is set
#   (a team's, from its secret store). Otherwise, and only with the default local backend,
#   PULUMI_CONFIG_PASSPHRASE_FILE points at .pulumi-state/passphrase, generated once per
#   checkout (mode 600). Stacks created with a KMS/Vault secrets provider need neither.
# - PULUMI_SKIP_UPDATE_CHECK=1 unless set.
# It prints nothing and never echoes a secret; it only exports variables (no `set -e`,
# no `exit`), so sourcing it cannot end your shell.

if [ -n "${BASH_VERSION:-}" ]; then
  _convex_env_src="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:-}" ]; then
  eval '_convex_env_src="${(%):-%x}"'
else
  _convex_env_src="./env.sh"
fi
_convex_env_root="$(CDPATH='' cd -- "$(dirname -- "$_convex_env_src")" && pwd -P)"
_convex_env_logical="$(CDPATH='' cd -- "$(dirname -- "$_convex_env_src")" && pwd)"

export PULUMI_SKIP_UPDATE_CHECK="${PULUMI_SKIP_UPDATE_CHECK:-1}"

_convex_env_default_backend="file://$_convex_env_root/.pulumi-state"
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-$_convex_env_default_backend}"

# The default backend, also when spelled through a symlinked path to this checkout.
if [ "$PULUMI_BACKEND_URL" = "$_convex_env_default_backend" ] ||
   [ "$PULUMI_BACKEND_URL" = "file://$_convex_env_logical/.pulumi-state" ]; then
  mkdir -p "$_convex_env_root/.pulumi-state"
  if [ -z "${PULUMI_CONFIG_PASSPHRASE+x}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
    if [ ! -s "$_convex_env_root/.pulumi-state/passphrase" ]; then
      # 32 random bytes as hex; od reads exactly what it needs (no SIGPIPE under pipefail).
      (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' \
        > "$_convex_env_root/.pulumi-state/passphrase")
    fi
    chmod 600 "$_convex_env_root/.pulumi-state/passphrase"
    export PULUMI_CONFIG_PASSPHRASE_FILE="$_convex_env_root/.pulumi-state/passphrase"
  fi
fi

unset _convex_env_src _convex_env_root _convex_env_logical _convex_env_default_backend
