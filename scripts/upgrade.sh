#!/usr/bin/env bash
# Upgrade a stack's Convex version the way upstream's guide recommends
# (self-hosted/advanced/upgrading.md): back up first, then move backend and dashboard
# together, and preview before anything changes. It never applies.
#
#   scripts/upgrade.sh [--app-dir DIR] [--backup-dir DIR] <stack> <new-version> [app-dir]
#
# Run it from any directory: the infrastructure repository is found from this script's
# own path, while DIR arguments are relative to your current directory. The app directory
# (default: the current one) is your Convex app (package.json, convex/), where
# `npx convex` runs.
#
# 1. checks its tools (pulumi, node, npx), then reads the stack's backendUrl and adminKey;
# 2. backs up into <backup-dir>/<stack>/<UTC time>/ (mode 700); the backup dir defaults to
#    $CONVEX_BACKUP_DIR, else ~/convex-backups, and is refused inside a git checkout (this
#    repository, your app's) unless git-ignored there:
#      env.txt       `npx convex env list`: the deployment's environment variables (mode 600)
#      snapshot.zip  `npx convex export --include-file-storage`
#    A failed backup stops the script before anything changes;
# 3. sets `version` on the stack;
# 4. runs `pulumi preview --diff`: only the images and the backend/dashboard containers
#    should be replaced. Review it, then apply with `./up.sh <stack>`.
# The state backend and passphrase come from env.sh (sourced). The admin key reaches npx
# through its environment only and is never printed.
set -euo pipefail

die() {
  echo "error: $*" >&2
  exit 1
}
usage() {
  echo "usage: $0 [--app-dir DIR] [--backup-dir DIR] <stack> <new-version> [app-dir]" >&2
  exit 2
}

# An absolute, symlink-free spelling of a path that may not exist yet.
canonical() {
  local path="$1" rest=""
  case "$path" in /*) ;; *) path="$PWD/$path" ;; esac
  while [ "$path" != / ] && [ "${path%/}" != "$path" ]; do path="${path%/}"; done
  while [ ! -d "$path" ]; do
    rest="/${path##*/}$rest"
    path="${path%/*}"
    [ -n "$path" ] || path=/
  done
  path="$(CDPATH='' cd -- "$path" && pwd -P)"
  printf '%s%s\n' "${path%/}" "$rest"
}

# Backups hold every document and file of the deployment: refuse a directory that git
# could pick up (inside a checkout and not ignored there).
refuse_tracked_backup_dir() {
  local dir="$1" probe="$1" top
  while [ ! -d "$probe" ]; do
    probe="${probe%/*}"
    [ -n "$probe" ] || probe=/
  done
  if command -v git >/dev/null && top="$(git -C "$probe" rev-parse --show-toplevel 2>/dev/null)" &&
     [ -n "$top" ]; then
    git -C "$top" check-ignore -q -- "$dir/snapshot.zip" ||
      die "the backup directory $dir is inside the git checkout $top and not git-ignored;" \
          "backups hold all your data and must never be committed. Pass --backup-dir" \
          "outside it (default: ~/convex-backups) or add it to $top/.gitignore."
  else
    case "$dir/" in
      "$repo"/*) die "the backup directory $dir is inside $repo, and without git it cannot" \
                     "be checked to be ignored; pass --backup-dir outside the repository." ;;
    esac
  fi
}

app_dir="" backup_root="${CONVEX_BACKUP_DIR:-}" positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --app-dir) [ $# -ge 2 ] || usage; app_dir="$2"; shift 2 ;;
    --app-dir=*) app_dir="${1#*=}"; shift ;;
    --backup-dir) [ $# -ge 2 ] || usage; backup_root="$2"; shift 2 ;;
    --backup-dir=*) backup_root="${1#*=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; positional+=("$@"); break ;;
    -*) echo "error: unknown option $1" >&2; usage ;;
    *) positional+=("$1"); shift ;;
  esac
done
if [ ${#positional[@]} -lt 2 ] || [ ${#positional[@]} -gt 3 ]; then
  usage
fi
stack="${positional[0]}" new_version="${positional[1]}"
if [ ${#positional[@]} -eq 3 ]; then
  [ -z "$app_dir" ] || die "the app directory is given twice (--app-dir and a third argument)"
  app_dir="${positional[2]}"
fi

missing=()
for tool in pulumi node npx; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "error: $0 needs ${missing[*]}, not found on PATH. Install:" >&2
  case " ${missing[*]} " in *" pulumi "*)
    echo "  - the Pulumi CLI: https://www.pulumi.com/docs/install/" >&2 ;; esac
  case " ${missing[*]} " in *" node "*|*" npx "*)
    echo "  - Node.js 18+ with npm (provides node and npx): https://nodejs.org/" >&2 ;; esac
  exit 1
fi

# Paths the caller gave are relative to the caller's directory: resolve them before any cd.
app_dir="${app_dir:-.}"
[ -d "$app_dir" ] || die "the app directory $app_dir does not exist (relative to $PWD)"
app_dir="$(CDPATH='' cd -- "$app_dir" && pwd -P)"
[ -f "$app_dir/package.json" ] ||
  die "$app_dir has no package.json: pass your Convex app's directory (where" \
      "\`npx convex deploy\` runs) with --app-dir, or run this from there"
backup_root="$(canonical "${backup_root:-${HOME:?HOME is not set}/convex-backups}")"
backup_dir="$backup_root/${stack//\//_}/$(date -u +%Y%m%dT%H%M%SZ)"

repo="$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
refuse_tracked_backup_dir "$backup_dir"
# shellcheck source=env.sh
. "$repo/env.sh"
cd "$repo"

old_version="$(pulumi config get version --stack "$stack" 2>/dev/null || true)"
if [ "$old_version" = "$new_version" ]; then
  echo "stack $stack already runs $new_version" >&2
  exit 1
fi
url="$(pulumi stack output backendUrl --stack "$stack")"
case "$url" in
  http://*|https://*) ;;
  *) die "stack $stack has no single backendUrl (a stack with deployments: upgrade" \
         "each deployment's data by hand, then set version)" ;;
esac
admin_key="$(pulumi stack output adminKey --show-secrets --stack "$stack")"
[ -n "$admin_key" ] || die "stack $stack has no adminKey output"

echo "backing up $url (stack $stack, version ${old_version:-default}) to $backup_dir"
(umask 077 && mkdir -p "$backup_dir")
(
  cd "$app_dir"
  umask 077
  export CONVEX_SELF_HOSTED_URL="$url" CONVEX_SELF_HOSTED_ADMIN_KEY="$admin_key"
  npx convex env list > "$backup_dir/env.txt"
  npx convex export --path "$backup_dir/snapshot.zip" --include-file-storage
)
chmod 600 "$backup_dir/env.txt"
echo "saved $backup_dir/env.txt (environment variables) and $backup_dir/snapshot.zip"

pulumi config set version "$new_version" --stack "$stack"
pulumi preview --diff --stack "$stack"
echo
echo "Review the preview: only images and the backend/dashboard containers should be replaced."
# Commands to copy into a shell: every value in them is quoted (a path may hold spaces,
# quotes or $(...)).
q() { printf '%q' "$1"; }
if [ -n "$old_version" ]; then
  undo="pulumi config set version $(q "$old_version") --stack $(q "$stack")"
else
  undo="pulumi config rm version --stack $(q "$stack")"
fi
echo "Then apply: $(q "$repo/up.sh") $(q "$stack")   (to undo before applying:" \
     "cd $(q "$repo") && . ./env.sh && $undo)"
echo "To restore the backup: cd $(q "$app_dir") && npx convex import --replace-all" \
     "$(q "$backup_dir/snapshot.zip")"
echo "  and set the variables of $(q "$backup_dir/env.txt") again with npx convex env set"
