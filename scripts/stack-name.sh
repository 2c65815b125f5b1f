# shellcheck shell=bash
# Sourced by ./up.sh and scripts/policy.sh: is_stack_name NAME succeeds for the stack names
# pulumi takes: name, org/name or org/project/name, each part of letters, digits, '-',
# '_' and '.' (never '.' or '..': they are not names), at most 100 characters.
is_stack_name() {
  local part='[A-Za-z0-9_.-]+'
  local pattern="^($part/){0,2}$part\$" dots='(^|/)\.{1,2}(/|$)'
  [[ "$1" =~ $pattern ]] && ! [[ "$1" =~ $dots ]] && [ "${#1}" -le 100 ]
}
