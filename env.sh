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
#   checkout (mode 600, in a 700 directory). Stacks created with a KMS/Vault secrets
#   provider need neither.
#   A passphrase file or state directory that is a symlink, not a regular file/directory,
#   owned by someone else, or open to group or others is refused (nothing is exported, the
#   reason is printed, and sourcing returns 1): another user could read or plant it.
# - PULUMI_SKIP_UPDATE_CHECK=1 unless set.
# It never echoes a secret and only exports variables (no `set -e`, no `exit`), so
# sourcing it cannot end your shell. Other shells (sh, dash, ksh) are refused with a
# message, before anything is created.

if [ -z "${BASH_VERSION:-}" ] && [ -z "${ZSH_VERSION:-}" ]; then
  echo "env.sh: error: source it from bash or zsh (this shell cannot tell where env.sh" \
       "lives); e.g. bash -c '. ./env.sh && pulumi ...'" >&2
  # `return` ends a sourced file; when run as a program, `exit` ends it instead.
  return 1 2>/dev/null || exit 1
fi

if [ -n "${BASH_VERSION:-}" ] && [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "env.sh: error: source it, do not run it: its variables are for your shell." \
       "Run: . ./env.sh" >&2
  exit 1
fi

_convex_env_fail() {
  echo "env.sh: error: $*" >&2
  return 1
}

# A path that must be ours alone: not a symlink, of the given type (-f or -d), owned by
# us, and without group or other permissions.
_convex_env_private() {
  _convex_env_path="$1"
  if [ -L "$_convex_env_path" ]; then
    _convex_env_fail "$_convex_env_path is a symlink; refusing to use it for Pulumi's" \
      "passphrase (it could point at another user's file). Remove it: rm '$_convex_env_path'"
    return 1
  fi
  if [ "$2" = -d ] && [ ! -d "$_convex_env_path" ]; then
    _convex_env_fail "$_convex_env_path is not a directory; move it away, then source env.sh again"
    return 1
  fi
  if [ "$2" = -f ] && [ ! -f "$_convex_env_path" ]; then
    _convex_env_fail "$_convex_env_path is not a regular file; move it away, then source" \
      "env.sh again (a new passphrase is generated only for a checkout without stacks)"
    return 1
  fi
  if [ ! -O "$_convex_env_path" ]; then
    _convex_env_fail "$_convex_env_path is not owned by you ($(id -un 2>/dev/null || echo "uid $(id -u)"));" \
      "someone else could read or replace Pulumi's passphrase. Check it, then take it over" \
      "(chown) or move it away"
    return 1
  fi
  # ls -ldn prints e.g. drwx------ or -rw-------: characters 5-10 are group and others.
  _convex_env_mode="$(ls -ldn -- "$_convex_env_path" 2>/dev/null | cut -c5-10)"
  if [ "$_convex_env_mode" != "------" ]; then
    if [ "$2" = -d ]; then
      chmod 700 -- "$_convex_env_path" 2>/dev/null ||
        { _convex_env_fail "$_convex_env_path is open to other users; run: chmod 700 '$_convex_env_path'"; return 1; }
    else
      _convex_env_fail "$_convex_env_path is readable or writable by other users, so the" \
        "passphrase that decrypts your stacks' secrets may have leaked. Restrict it" \
        "(chmod 600 '$_convex_env_path') and consider rotating it" \
        "(pulumi stack change-secrets-provider passphrase)"
      return 1
    fi
  fi
  return 0
}

# Where this file lives, read at top level (inside a function zsh would name the caller).
if [ -n "${BASH_VERSION:-}" ]; then
  _convex_env_src="${BASH_SOURCE[0]}"
else
  eval '_convex_env_src="${(%):-%x}"'
fi

_convex_env_main() {
  _convex_env_root="$(CDPATH='' cd -- "$(dirname -- "$_convex_env_src")" && pwd -P)" ||
    { _convex_env_fail "cannot find the directory of $_convex_env_src"; return 1; }
  _convex_env_logical="$(CDPATH='' cd -- "$(dirname -- "$_convex_env_src")" && pwd)"

  export PULUMI_SKIP_UPDATE_CHECK="${PULUMI_SKIP_UPDATE_CHECK:-1}"

  _convex_env_default_backend="file://$_convex_env_root/.pulumi-state"
  export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-$_convex_env_default_backend}"

  # Only the default backend (also spelled through a symlinked path to this checkout)
  # gets a generated passphrase; a team's backend brings its own.
  if [ "$PULUMI_BACKEND_URL" != "$_convex_env_default_backend" ] &&
     [ "$PULUMI_BACKEND_URL" != "file://$_convex_env_logical/.pulumi-state" ]; then
    return 0
  fi
  _convex_env_state="$_convex_env_root/.pulumi-state"
  if [ ! -e "$_convex_env_state" ] && [ ! -L "$_convex_env_state" ]; then
    (umask 077 && mkdir -- "$_convex_env_state") ||
      { _convex_env_fail "cannot create $_convex_env_state"; return 1; }
  fi
  if [ -n "${PULUMI_CONFIG_PASSPHRASE+x}" ] || [ -n "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
    return 0  # the team's passphrase; the state directory is theirs to manage
  fi
  _convex_env_private "$_convex_env_state" -d || return 1
  _convex_env_passfile="$_convex_env_state/passphrase"
  if [ ! -e "$_convex_env_passfile" ] && [ ! -L "$_convex_env_passfile" ]; then
    # 32 random bytes as hex, written to a fresh private file (mktemp: O_EXCL, mode 600)
    # and renamed into place: a rename never follows a symlink planted meanwhile.
    _convex_env_tmp="$(umask 077 && mktemp "$_convex_env_state/.passphrase.XXXXXX")" ||
      { _convex_env_fail "cannot write into $_convex_env_state"; return 1; }
    if ! { od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$_convex_env_tmp"; } ||
       [ ! -s "$_convex_env_tmp" ] ||
       ! mv -f -- "$_convex_env_tmp" "$_convex_env_passfile"; then
      rm -f -- "$_convex_env_tmp"
      _convex_env_fail "could not generate $_convex_env_passfile"
      return 1
    fi
  fi
  _convex_env_private "$_convex_env_passfile" -f || return 1
  if [ ! -s "$_convex_env_passfile" ]; then
    _convex_env_fail "$_convex_env_passfile is empty; restore it from your backup or" \
      "secret store (it decrypts the stacks' secrets), or remove it if no stack exists yet"
    return 1
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE="$_convex_env_passfile"
}

# `||` keeps a caller's `set -e` from ending the shell halfway; failures are returned.
_convex_env_rc=0
_convex_env_main || _convex_env_rc=$?
unset -f _convex_env_main _convex_env_private _convex_env_fail
unset _convex_env_src _convex_env_root _convex_env_logical _convex_env_default_backend \
  _convex_env_state _convex_env_passfile _convex_env_tmp _convex_env_path _convex_env_mode
# The status is expanded before the variable is unset; return when sourced, exit when run.
eval "unset _convex_env_rc; return $_convex_env_rc 2>/dev/null || exit $_convex_env_rc"
