#!/usr/bin/env bash
# Upgrade a stack's Convex version the way upstream recommends: export first, then move
# backend and dashboard together, and preview before anything changes.
#
#   scripts/upgrade.sh <stack> <new-version> [convex-app-dir]
#
# 1. exports the deployment's data with `npx convex export` (run in the Convex app
#    directory, default: the current one) into backups/<stack>-<old>-<time>.zip there;
# 2. sets `version` on the stack;
# 3. runs `pulumi preview --diff`: only the images and the backend/dashboard containers
#    should be replaced. Nothing is applied: review, then `pulumi up --stack <stack>`.
# Set PULUMI_BACKEND_URL / PULUMI_CONFIG_PASSPHRASE(_FILE) as for any pulumi command.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 <stack> <new-version> [convex-app-dir]" >&2
  exit 2
fi
stack="$1" new_version="$2" app_dir="${3:-.}"
cd "$(dirname "$0")/.."
project_dir="$PWD"

old_version="$(pulumi config get version --stack "$stack" 2>/dev/null || true)"
if [ "$old_version" = "$new_version" ]; then
  echo "stack $stack already runs $new_version" >&2
  exit 1
fi
url="$(pulumi stack output backendUrl --stack "$stack")"
case "$url" in
  http://*|https://*) ;;
  *) echo "error: stack $stack has no single backendUrl (a stack with deployments: upgrade" \
          "each deployment's data by hand, then set version)" >&2
     exit 1 ;;
esac
admin_key="$(pulumi stack output adminKey --show-secrets --stack "$stack")"

backup="backups/${stack}-${old_version:-default}-$(date -u +%Y%m%dT%H%M%SZ).zip"
echo "exporting $url to $app_dir/$backup"
(
  cd "$app_dir"
  mkdir -p backups
  CONVEX_SELF_HOSTED_URL="$url" CONVEX_SELF_HOSTED_ADMIN_KEY="$admin_key" \
    npx convex export --path "$backup"
)

cd "$project_dir"
pulumi config set version "$new_version" --stack "$stack"
pulumi preview --diff --stack "$stack"
echo
echo "Review the preview: only images and the backend/dashboard containers should be replaced."
if [ -n "$old_version" ]; then
  undo="pulumi config set version $old_version --stack $stack"
else
  undo="pulumi config rm version --stack $stack"
fi
echo "Then: pulumi up --stack $stack   (to undo before applying: $undo)"
