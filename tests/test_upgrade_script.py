"""scripts/upgrade.sh: the commands it suggests (undo, apply, restore) are shell-quoted, so a
version, a stack path or a backup path with spaces, quotes or $(...) is passed as one
argument and never runs anything. Runs the script with the stand-in commands of
tests/test_scripts.py."""

import re
import subprocess

from test_scripts import make_app, sandbox, upgrade  # noqa: F401 - sandbox is a fixture

HOSTILE = "it's $(touch pwned) `touch pwned2`"
RECORD = '#!/usr/bin/env bash\nprintf "%s\\n" "${0##*/}" "$@" > "$REC"\n'


def suggested(stdout: str, prefix: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith(prefix)]
    return line[len(prefix):]


def run_recorded(sandbox, command: str, tool: str) -> list[str]:  # noqa: F811
    """Run COMMAND in bash with TOOL recording its argv; returns [tool, *args]."""
    bin_dir = sandbox.root / "record-bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / tool).write_text(RECORD)
    (bin_dir / tool).chmod(0o755)
    record = sandbox.root / "recorded"
    subprocess.run(["bash", "-c", command], check=True, timeout=20, cwd=sandbox.root,
                   env={"PATH": f"{bin_dir}:{sandbox.sysbin}", "REC": str(record)})
    return record.read_text().splitlines()


def test_the_suggested_commands_are_quoted(sandbox):  # noqa: F811
    app = make_app(sandbox.root / "my app's")
    backups = sandbox.root / f"backups {HOSTILE}"
    result = upgrade(sandbox, "prod", "bbb", "--app-dir", str(app), "--backup-dir",
                     str(backups), OLD_VERSION=HOSTILE)
    assert result.returncode == 0, result.stderr
    (backup,) = (backups / "prod").iterdir()

    apply = suggested(result.stdout, "Then apply: ")
    undo = re.fullmatch(r".*\(to undo before applying: cd \S+ && \. \./env\.sh && (.*)\)",
                        apply).group(1)
    assert run_recorded(sandbox, undo, "pulumi") == [
        "pulumi", "config", "set", "version", HOSTILE, "--stack", "prod"]

    restore = suggested(result.stdout, "To restore the backup: ")
    assert run_recorded(sandbox, restore, "npx") == [
        "npx", "convex", "import", "--replace-all", str(backup.resolve() / "snapshot.zip")]
    assert not list(sandbox.root.rglob("pwned*"))
