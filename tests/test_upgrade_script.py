"""scripts/upgrade.sh: export first, then move the version, then preview (never apply)."""

import os
import subprocess

from harness import REPO

SCRIPT = REPO / "scripts" / "upgrade.sh"
FAKE_PULUMI = """#!/bin/sh
echo "pulumi $*" >> "$CALLS"
case "$*" in
  "config get version"*) echo "$OLD_VERSION" ;;
  "stack output backendUrl"*) echo "$BACKEND_URL" ;;
  "stack output adminKey"*) echo "convex-prod|01abcdef" ;;
esac
"""
FAKE_NPX = """#!/bin/sh
echo "npx $* url=$CONVEX_SELF_HOSTED_URL key=$CONVEX_SELF_HOSTED_ADMIN_KEY cwd=$PWD" >> "$CALLS"
"""


def run_upgrade(tmp_path, *args, backend_url="https://api.convex.example.com", old="aaa"):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("pulumi", FAKE_PULUMI), ("npx", FAKE_NPX)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls),
           "OLD_VERSION": old, "BACKEND_URL": backend_url}
    result = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True,
                            text=True)
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_exports_before_changing_the_version_and_only_previews(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    result, calls = run_upgrade(tmp_path, "prod", "bbb", str(app))
    assert result.returncode == 0, result.stderr
    export = next(i for i, c in enumerate(calls) if c.startswith("npx convex export"))
    set_version = calls.index("pulumi config set version bbb --stack prod")
    preview = calls.index("pulumi preview --diff --stack prod")
    assert export < set_version < preview
    assert "url=https://api.convex.example.com key=convex-prod|01abcdef" in calls[export]
    assert f"cwd={app}" in calls[export] and "--path backups/prod-aaa-" in calls[export]
    assert not any(c.startswith("pulumi up") for c in calls)
    assert (app / "backups").is_dir()
    assert "pulumi config set version aaa --stack prod" in result.stdout  # how to undo


def test_refuses_a_stack_of_many_deployments(tmp_path):
    result, calls = run_upgrade(tmp_path, "preview", "bbb", backend_url='{"pr-1": "http://x"}')
    assert result.returncode == 1
    assert "no single backendUrl" in result.stderr
    assert not any("config set" in c or "npx" in c for c in calls)


def test_same_version_and_usage(tmp_path):
    result, _ = run_upgrade(tmp_path, "prod", "aaa")
    assert result.returncode == 1 and "already runs aaa" in result.stderr
    result, _ = run_upgrade(tmp_path, "prod")
    assert result.returncode == 2 and "usage:" in result.stderr
