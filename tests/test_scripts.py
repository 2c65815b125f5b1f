"""up.sh, env.sh and scripts/upgrade.sh, run for real against stand-in commands.

Each test copies the scripts into a scratch "repository" (so nothing is written into
this checkout) and runs them with PATH = fake pulumi/docker/npx/node/python3 (small bash
scripts that log their argv to $CALLS and print canned output) + a directory of the few
real tools the scripts use. No network, Docker or Pulumi is needed.
"""

from __future__ import annotations

import os
import pty
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

ADMIN_KEY = "convex-prod|01deadbeefcafe0123456789"
SYSTEM_TOOLS = ("bash", "cat", "chmod", "cut", "date", "dirname", "git", "grep", "id", "ls",
                "mkdir", "mktemp", "mv", "od", "rm", "sed", "sleep", "tail", "timeout", "tr")

FAKES = {
    "pulumi": r"""#!/usr/bin/env bash
printf 'pulumi %s\n' "$*" >> "$CALLS"
printf 'backend=%s passfile=%s parallel=%s\n' "${PULUMI_BACKEND_URL:-}" \
  "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" "${PULUMI_PARALLEL-}" >> "$CALLS.env"
case "$*" in
  "config get docker:host"*)
    if [ -n "${FAKE_DOCKER_HOST:-}" ]; then echo "$FAKE_DOCKER_HOST"; else
      echo "error: configuration key 'docker:host' not found for stack" >&2; exit 255; fi ;;
  "config get version"*) echo "${OLD_VERSION:-}" ;;
  "config get convex-selfhost:target"*)
    if [ -n "${FAKE_TARGET:-}" ]; then echo "$FAKE_TARGET"; else
      echo "error: configuration key 'convex-selfhost:target' not found" >&2; exit 255; fi ;;
  "stack output backendUrl"*) echo "${BACKEND_URL:-https://api.convex.example.com}" ;;
  "stack output adminKey"*) echo "$ADMIN_KEY" ;;
  "stack output"*) echo "backendUrl  https://api.convex.example.com" ;;
  "stack select"*) [ -z "${FAKE_NO_STACK:-}" ] || exit 255 ;;
  version) echo "${FAKE_PULUMI_VERSION:-v3.274.0}" ;;
  preview*) echo "Previewing update (fake)"; [ -z "${FAKE_HANG:-}" ] || exec sleep 30 ;;
  up*) echo "Previewing update (fake)"; echo "Updating (fake)" ;;
esac
""",
    # Answers only for the engine named by FAKE_ENGINE ("local" = no -H and no DOCKER_HOST).
    "docker": r"""#!/usr/bin/env bash
printf 'docker %s\n' "$*" >> "$CALLS"
host="${DOCKER_HOST:-local}"
if [ "${1:-}" = -H ]; then host="$2"; fi
if [ "$host" != "${FAKE_ENGINE:-local}" ]; then
  echo "Cannot connect to the Docker daemon at $host. Is the docker daemon running?" >&2
  exit 1
fi
echo "${FAKE_API:-1.47}"
""",
    # Logs whether it got the right admin key, never the key itself.
    "npx": r"""#!/usr/bin/env bash
key=no
[ "${CONVEX_SELF_HOSTED_ADMIN_KEY:-}" = "$ADMIN_KEY" ] && key=yes
printf 'npx %s | cwd=%s url=%s key=%s\n' "$*" "$PWD" "${CONVEX_SELF_HOSTED_URL:-}" "$key" \
  >> "$CALLS"
[ -z "${NPX_FAIL:-}" ] || { echo "npx failed" >&2; exit 1; }
case "$*" in
  "convex env list") echo "AUTH_SECRET=from-the-deployment" ;;
  "convex export"*)
    prev=""
    for arg in "$@"; do
      if [ "$prev" = --path ]; then printf 'PK' > "$arg"; fi
      prev="$arg"
    done ;;
esac
""",
    "node": "#!/usr/bin/env bash\necho v20.0.0\n",
    "python3": r"""#!/usr/bin/env bash
printf 'python3 %s\n' "$*" >> "$CALLS"
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  printf '#!/usr/bin/env bash\nprintf "%s/bin/python %%s\\n" "$*" >> "$CALLS"\n' "$3" \
    > "$3/bin/python"
  chmod +x "$3/bin/python"
fi
""",
}


@dataclass
class Sandbox:
    root: Path
    repo: Path
    home: Path
    fakebin: Path
    sysbin: Path
    calls_file: Path

    def env(self, **extra: str) -> dict:
        env = {"PATH": f"{self.fakebin}:{self.sysbin}", "HOME": str(self.home),
               "CALLS": str(self.calls_file), "ADMIN_KEY": ADMIN_KEY, "LC_ALL": "C",
               "CONVEX_SELFHOST_SKIP_INSTALL": "1"}
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

    def run(self, *argv: str, cwd: Path | None = None, stdin=subprocess.DEVNULL, **extra):
        return subprocess.run(["bash", *argv], cwd=cwd or self.root, env=self.env(**extra),
                              stdin=stdin, capture_output=True, text=True, timeout=20)

    def calls(self) -> list[str]:
        return self.calls_file.read_text().splitlines() if self.calls_file.exists() else []

    def without(self, *tools: str) -> None:
        for tool in tools:
            (self.fakebin / tool).unlink()


@pytest.fixture
def sandbox(tmp_path) -> Sandbox:
    repo = tmp_path / "infra"
    (repo / "scripts").mkdir(parents=True)
    (repo / "policy").mkdir()
    for name in ("up.sh", "env.sh", "scripts/upgrade.sh", "scripts/policy.sh",
                 "scripts/stack-name.sh", ".gitignore"):
        shutil.copy2(REPO / name, repo / name)
    (repo / "requirements.txt").write_text("pulumi\n")
    (repo / "policy" / "requirements.txt").write_text("pulumi-policy\n")
    fakebin, sysbin, home = tmp_path / "fakebin", tmp_path / "sysbin", tmp_path / "home"
    for directory in (fakebin, sysbin, home):
        directory.mkdir()
    for name, body in FAKES.items():
        (fakebin / name).write_text(body)
        (fakebin / name).chmod(0o755)
    for tool in SYSTEM_TOOLS:
        found = shutil.which(tool)
        if found:
            (sysbin / tool).symlink_to(found)
    return Sandbox(tmp_path, repo, home, fakebin, sysbin, tmp_path / "calls.txt")


def pulumi_up_calls(calls):
    return [c for c in calls if c.startswith("pulumi up")]


# --- env.sh -------------------------------------------------------------------------

PRINT_ENV = ('. "$1"; printf "%s\\n" "backend=${PULUMI_BACKEND_URL-}" '
             '"passfile=${PULUMI_CONFIG_PASSPHRASE_FILE-}" "skip=${PULUMI_SKIP_UPDATE_CHECK-}" '
             '"passphrase=${PULUMI_CONFIG_PASSPHRASE-unset}"; set | grep "^_convex_env" || true')


def source_env(sandbox, cwd=None, shell_opts="", **extra):
    script = (f"set {shell_opts}; " if shell_opts else "") + PRINT_ENV
    return subprocess.run(["bash", "-c", script, "_", str(sandbox.repo / "env.sh")],
                          cwd=cwd or sandbox.root, env=sandbox.env(**extra),
                          capture_output=True, text=True, timeout=20)


def source_env_status(sandbox, **extra):
    """(exit status of the `.`, exported passphrase file, stderr)."""
    script = '. "$1"; echo "rc=$?"; echo "passfile=${PULUMI_CONFIG_PASSPHRASE_FILE-}"'
    result = subprocess.run(["bash", "-c", script, "_", str(sandbox.repo / "env.sh")],
                            cwd=sandbox.root, env=sandbox.env(**extra), capture_output=True,
                            text=True, timeout=20)
    values = parse(result.stdout)
    return int(values["rc"]), values["passfile"], result.stderr


def parse(stdout):
    return dict(line.split("=", 1) for line in stdout.splitlines())


def test_env_defaults_to_the_local_backend_and_a_generated_passphrase(sandbox):
    elsewhere = sandbox.root / "elsewhere"
    elsewhere.mkdir()
    result = source_env(sandbox, cwd=elsewhere, shell_opts="-euo pipefail")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    values = parse(result.stdout)  # nothing else printed, no helper variables left behind
    state = sandbox.repo.resolve() / ".pulumi-state"
    assert values == {"backend": f"file://{state}", "passfile": str(state / "passphrase"),
                      "skip": "1", "passphrase": "unset"}
    passfile = state / "passphrase"
    secret = passfile.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert secret not in result.stdout + result.stderr
    # Sourcing again keeps the passphrase (it decrypts the stack's secrets).
    assert source_env(sandbox).returncode == 0
    assert passfile.read_text() == secret


def test_env_respects_a_team_backend_and_passphrase(sandbox):
    result = source_env(sandbox, PULUMI_BACKEND_URL="s3://state?region=eu-central-1")
    values = parse(result.stdout)
    assert values["backend"] == "s3://state?region=eu-central-1"
    assert values["passfile"] == ""  # no generated passphrase for a shared backend
    assert not (sandbox.repo / ".pulumi-state").exists()

    result = source_env(sandbox, PULUMI_CONFIG_PASSPHRASE="from-the-vault")
    values = parse(result.stdout)
    assert values["passfile"] == "" and values["passphrase"] == "from-the-vault"
    assert "from-the-vault" not in result.stderr

    result = source_env(sandbox, PULUMI_CONFIG_PASSPHRASE="")  # an empty passphrase is one
    assert parse(result.stdout)["passfile"] == ""

    result = source_env(sandbox, PULUMI_CONFIG_PASSPHRASE_FILE="/secrets/pass",
                        PULUMI_SKIP_UPDATE_CHECK="0")
    values = parse(result.stdout)
    assert values["passfile"] == "/secrets/pass" and values["skip"] == "0"
    assert not (sandbox.repo / ".pulumi-state" / "passphrase").exists()


def test_env_treats_the_default_backend_spelled_out_as_the_default(sandbox):
    state = sandbox.repo.resolve() / ".pulumi-state"
    result = source_env(sandbox, PULUMI_BACKEND_URL=f"file://{state}")
    assert parse(result.stdout)["passfile"] == str(state / "passphrase")


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
def test_env_works_in_zsh(sandbox):
    (sandbox.sysbin / "zsh").symlink_to(shutil.which("zsh"))
    result = subprocess.run(["zsh", "-c", PRINT_ENV, "_", str(sandbox.repo / "env.sh")],
                            cwd=sandbox.root, env=sandbox.env(), capture_output=True,
                            text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    values = parse(result.stdout)
    assert set(values) == {"backend", "passfile", "skip", "passphrase"}  # no helpers left
    assert values["backend"] == f"file://{sandbox.repo.resolve()}/.pulumi-state"
    assert values["passfile"] == f"{sandbox.repo.resolve()}/.pulumi-state/passphrase"


def test_env_refuses_a_planted_passphrase_symlink_and_writes_nothing_through_it(sandbox):
    state = sandbox.repo / ".pulumi-state"
    state.mkdir(mode=0o700)
    victim = sandbox.root / "someone-elses-file"
    (state / "passphrase").symlink_to(victim)
    rc, passfile, stderr = source_env_status(sandbox)
    assert rc == 1
    assert "is a symlink" in stderr and "rm " in stderr
    assert passfile == ""  # nothing exported
    assert not victim.exists()  # nothing written or chmod-ed through the link
    victim.write_text("theirs")
    victim.chmod(0o644)
    assert source_env_status(sandbox)[0] == 1
    assert victim.read_text() == "theirs" and stat.S_IMODE(victim.stat().st_mode) == 0o644


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_env_refuses_a_passphrase_file_others_can_read(sandbox, mode):
    state = sandbox.repo / ".pulumi-state"
    state.mkdir(mode=0o700)
    passfile = state / "passphrase"
    passfile.write_text("a" * 64)
    passfile.chmod(mode)
    rc, exported, stderr = source_env_status(sandbox)
    assert rc == 1 and exported == ""
    assert "readable or writable by other users" in stderr
    assert "chmod 600" in stderr and "a" * 64 not in stderr
    assert stat.S_IMODE(passfile.stat().st_mode) == mode  # reported, not silently fixed


def test_env_refuses_a_passphrase_that_is_not_a_regular_file(sandbox):
    (sandbox.repo / ".pulumi-state" / "passphrase").mkdir(parents=True)
    rc, exported, stderr = source_env_status(sandbox)
    assert rc == 1 and exported == "" and "is not a regular file" in stderr


def test_env_refuses_a_passphrase_file_of_another_user(sandbox, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    state = sandbox.repo / ".pulumi-state"
    state.mkdir(mode=0o700)
    passfile = state / "passphrase"
    passfile.write_text("b" * 64)
    passfile.chmod(0o600)
    os.chown(passfile, 65534, 65534)
    rc, exported, stderr = source_env_status(sandbox)
    assert rc == 1 and exported == "" and "is not owned by you" in stderr


def test_env_tightens_its_own_state_directory(sandbox):
    state = sandbox.repo / ".pulumi-state"
    state.mkdir()
    state.chmod(0o755)
    rc, exported, stderr = source_env_status(sandbox)
    assert rc == 0, stderr
    assert exported == str(state.resolve() / "passphrase")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


@pytest.mark.parametrize("shell", ["sh", "dash"])
def test_env_refuses_other_shells_before_creating_anything(sandbox, shell):
    if not shutil.which(shell):
        pytest.skip(f"{shell} is not installed")
    (sandbox.sysbin / shell).symlink_to(shutil.which(shell))
    elsewhere = sandbox.root / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([shell, "-c", f'. "{sandbox.repo / "env.sh"}"; echo "rc=$?"'],
                            cwd=elsewhere, env=sandbox.env(), capture_output=True, text=True,
                            timeout=20)
    assert "source it from bash or zsh" in result.stderr
    assert "rc=0" not in result.stdout
    assert list(elsewhere.iterdir()) == [] and not (sandbox.repo / ".pulumi-state").exists()


def test_env_run_as_a_program_says_to_source_it(sandbox):
    result = sandbox.run(str(sandbox.repo / "env.sh"))
    assert result.returncode == 1 and ". ./env.sh" in result.stderr
    assert not (sandbox.repo / ".pulumi-state").exists()


# --- up.sh --------------------------------------------------------------------------


def test_up_without_a_terminal_previews_and_refuses_to_apply_without_yes(sandbox):
    result = sandbox.run(str(sandbox.repo / "up.sh"), "staging")
    assert result.returncode != 0
    assert "not applied" in result.stderr and "--yes" in result.stderr
    calls = sandbox.calls()
    assert "pulumi preview --stack staging --refresh" in calls
    assert "Previewing update" in result.stdout
    assert pulumi_up_calls(calls) == []


def test_up_with_yes_applies_and_passes_other_arguments(sandbox):
    result = sandbox.run(str(sandbox.repo / "up.sh"), "staging", "--refresh", "--yes")
    assert result.returncode == 0, result.stderr
    calls = sandbox.calls()
    assert pulumi_up_calls(calls) == ["pulumi up --yes --stack staging --refresh"]
    assert calls.index("pulumi stack select --create staging --secrets-provider passphrase") \
        < calls.index("pulumi up --yes --stack staging --refresh")
    assert "pulumi stack output --stack staging" in calls
    # env.sh was sourced: the scratch repository's own state and passphrase.
    state = sandbox.repo.resolve() / ".pulumi-state"
    env_lines = Path(f"{sandbox.calls_file}.env").read_text().splitlines()
    assert env_lines[0] == f"backend=file://{state} passfile={state / 'passphrase'} parallel=32"


@pytest.mark.parametrize("stack", ["dev", "dev-alice"])
def test_up_applies_dev_stacks_without_asking(sandbox, stack):
    args = [stack] if stack != "dev" else []  # dev is the default
    result = sandbox.run(str(sandbox.repo / "up.sh"), *args)
    assert result.returncode == 0, result.stderr
    # ... and without a preview nobody would approve (the update shows each change).
    assert pulumi_up_calls(sandbox.calls()) == [
        f"pulumi up --yes --skip-preview --stack {stack} --refresh"]


def test_up_runs_32_operations_at_once_unless_told_otherwise(sandbox):
    for extra, expected in (({}, "32"), ({"PULUMI_PARALLEL": "4"}, "4")):
        Path(f"{sandbox.calls_file}.env").unlink(missing_ok=True)
        result = sandbox.run(str(sandbox.repo / "up.sh"), "staging", "--yes", **extra)
        assert result.returncode == 0, result.stderr
        lines = Path(f"{sandbox.calls_file}.env").read_text().splitlines()
        assert {line.rsplit("parallel=", 1)[1] for line in lines} == {expected}
    # A --parallel among the arguments goes to pulumi, which prefers it to the variable.
    sandbox.calls_file.unlink()
    sandbox.run(str(sandbox.repo / "up.sh"), "staging", "--yes", "--parallel", "2")
    assert pulumi_up_calls(sandbox.calls()) == [
        "pulumi up --yes --stack staging --refresh --parallel 2"]


@pytest.mark.parametrize("args", [
    ["dev", "--stack", "prod"], ["dev", "-s", "prod"], ["dev", "--stack=prod"],
    ["dev-x", "-sprod"], ["dev", "-ys", "prod"], ["dev", "-ysprod"], ["dev", "-fys", "prod"],
    ["--stack", "dev", "--stack", "prod"],
])
def test_up_refuses_a_second_stack_among_the_arguments(sandbox, args):
    result = sandbox.run(str(sandbox.repo / "up.sh"), *args)
    assert result.returncode == 1
    assert "error:" in result.stderr
    assert not [c for c in sandbox.calls() if c.startswith("pulumi")]


@pytest.mark.parametrize("args", [["--stack", "prod"], ["-s", "prod"], ["--stack=prod"],
                                  ["-sprod"], ["prod", "--stack", "prod"]])
def test_up_takes_a_stack_selector_as_the_stack_and_confirms_it(sandbox, args):
    result = sandbox.run(str(sandbox.repo / "up.sh"), *args)
    assert result.returncode == 1 and "not applied" in result.stderr
    calls = sandbox.calls()
    assert pulumi_up_calls(calls) == []
    assert "pulumi preview --stack prod --refresh" in calls


@pytest.mark.parametrize("stack", ["../dev", "acme/other/dev", "dev/../prod", "./dev",
                                   "de v", "dev;rm", "a/b/c/dev", "dev\nprod", "x" * 101])
def test_up_refuses_names_that_are_not_stack_names_or_not_plain_dev(sandbox, stack):
    result = sandbox.run(str(sandbox.repo / "up.sh"), "--stack", stack)
    calls = sandbox.calls()
    assert pulumi_up_calls(calls) == []
    if stack == "acme/other/dev":  # a valid name, but not this project's plain dev stack
        assert result.returncode == 1 and "not applied" in result.stderr
        assert "pulumi preview --stack acme/other/dev --refresh" in calls
    else:
        assert result.returncode == 1 and "is not a stack name" in result.stderr
        assert not [c for c in calls if c.startswith("pulumi")]


@pytest.mark.parametrize("arg", ["--cwd", "--cwd=/elsewhere", "-C", "-C/elsewhere",
                                 "--config-file=/tmp/other.yaml"])
def test_up_refuses_arguments_that_point_pulumi_elsewhere(sandbox, arg):
    result = sandbox.run(str(sandbox.repo / "up.sh"), "dev", arg, "/elsewhere")
    assert result.returncode == 1 and "refused" not in result.stdout
    assert "another project" in result.stderr
    assert not [c for c in sandbox.calls() if c.startswith("pulumi")]


def test_up_passes_value_clusters_through(sandbox):
    # -m's value may contain an s; it is a message, not a stack.
    result = sandbox.run(str(sandbox.repo / "up.sh"), "staging", "-mships", "--yes")
    assert result.returncode == 0, result.stderr
    assert pulumi_up_calls(sandbox.calls()) == ["pulumi up --yes --stack staging --refresh -mships"]


def test_up_stops_when_env_sh_refuses(sandbox):
    state = sandbox.repo / ".pulumi-state"
    state.mkdir(mode=0o700)
    (state / "passphrase").symlink_to(sandbox.root / "elsewhere")
    result = sandbox.run(str(sandbox.repo / "up.sh"))
    assert result.returncode == 1 and "is a symlink" in result.stderr
    assert not [c for c in sandbox.calls() if c.startswith("pulumi")]


@pytest.mark.parametrize("version,refused", [
    ("v3.207.0", True), ("v3.99.1", True), ("v2.25.2", True), ("v3.208.0", False),
    ("v3.274.0", False), ("v3.1000.0", False), ("", False)])
def test_up_refuses_a_pulumi_cli_without_stash_resources(sandbox, version, refused):
    result = sandbox.run(str(sandbox.repo / "up.sh"), "--yes",
                         FAKE_PULUMI_VERSION=version)
    ups = pulumi_up_calls(sandbox.calls())
    if refused:
        assert result.returncode == 1 and ups == []
        assert f"the Pulumi CLI is {version}; this project needs 3.208 or newer" \
            in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert len(ups) == 1


def run_at_a_terminal(sandbox, *args, stdout_too=True):
    controller, terminal = pty.openpty()
    try:
        return subprocess.run(["bash", str(sandbox.repo / "up.sh"), *args], cwd=sandbox.root,
                              env=sandbox.env(), stdin=terminal,
                              stdout=terminal if stdout_too else subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=20)
    finally:
        os.close(controller)
        os.close(terminal)


def test_up_at_a_terminal_lets_pulumi_ask(sandbox):
    result = run_at_a_terminal(sandbox, "prod")
    assert result.returncode == 0, result.stderr
    assert pulumi_up_calls(sandbox.calls()) == ["pulumi up --stack prod --refresh"]


def test_up_needs_yes_when_pulumi_could_not_ask(sandbox):
    # pulumi asks only when stdout is a terminal too, and never with --non-interactive.
    for args, stdout_too in ((["prod"], False), (["prod", "--non-interactive"], True)):
        result = run_at_a_terminal(sandbox, *args, stdout_too=stdout_too)
        assert result.returncode == 1 and "not applied" in result.stderr
    assert pulumi_up_calls(sandbox.calls()) == []
    assert "pulumi preview --stack prod --refresh --non-interactive" in sandbox.calls()


def test_up_checks_the_stacks_remote_engine_not_a_local_one(sandbox):
    result = sandbox.run(str(sandbox.repo / "up.sh"), "prod", "--yes",
                         FAKE_DOCKER_HOST="ssh://user@host", FAKE_ENGINE="ssh://user@host")
    assert result.returncode == 0, result.stderr
    calls = sandbox.calls()
    assert "pulumi config get docker:host --stack prod" in calls
    docker = [c for c in calls if c.startswith("docker ")]
    assert docker == ["docker -H ssh://user@host version --format {{.Server.APIVersion}}"]
    assert "warning" not in result.stderr
    assert pulumi_up_calls(calls) == ["pulumi up --yes --stack prod --refresh"]


def test_up_checks_docker_host_from_the_environment(sandbox):
    result = sandbox.run(str(sandbox.repo / "up.sh"), "prod", "--yes",
                         DOCKER_HOST="tcp://10.0.0.5:2376", FAKE_ENGINE="tcp://10.0.0.5:2376")
    assert result.returncode == 0, result.stderr
    assert "docker -H tcp://10.0.0.5:2376 version --format {{.Server.APIVersion}}" \
        in sandbox.calls()


def test_up_stops_clearly_when_the_remote_engine_does_not_answer(sandbox):
    result = sandbox.run(str(sandbox.repo / "up.sh"), "prod", "--yes",
                         FAKE_DOCKER_HOST="ssh://user@host", FAKE_ENGINE="local")
    assert result.returncode == 1
    assert "ssh://user@host" in result.stderr and "does not answer" in result.stderr
    assert "Cannot connect" in result.stderr  # the engine's own reason
    assert pulumi_up_calls(sandbox.calls()) == []


def test_up_stops_clearly_without_a_local_engine(sandbox):
    result = sandbox.run(str(sandbox.repo / "up.sh"), "--yes", FAKE_ENGINE="nowhere")
    assert result.returncode == 1
    assert "local Docker engine does not answer" in result.stderr
    assert "Start Docker" in result.stderr and "docker:host" in result.stderr
    assert pulumi_up_calls(sandbox.calls()) == []


@pytest.mark.parametrize("target", ["host", "kubernetes"])
def test_up_needs_no_docker_engine_for_a_host_or_cluster_stack(sandbox, target):
    sandbox.without("docker")
    result = sandbox.run(str(sandbox.repo / "up.sh"), "prod", "--yes", FAKE_TARGET=target,
                         FAKE_ENGINE="nowhere")
    assert result.returncode == 0, result.stderr
    assert f"target {target}: no Docker engine needed on this machine" in result.stdout
    assert not [c for c in sandbox.calls() if c.startswith("docker ")]
    assert pulumi_up_calls(sandbox.calls()) == ["pulumi up --yes --stack prod --refresh"]


def test_up_warns_about_an_engine_older_than_25(sandbox):
    result = sandbox.run(str(sandbox.repo / "up.sh"), "prod", "--yes",
                         FAKE_DOCKER_HOST="ssh://user@old", FAKE_ENGINE="ssh://user@old",
                         FAKE_API="1.43")
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "below 1.44" in result.stderr
    assert "start_interval" in result.stderr and "ssh://user@old" in result.stderr
    assert pulumi_up_calls(sandbox.calls()) == ["pulumi up --yes --stack prod --refresh"]


def test_up_without_a_docker_cli_needs_a_remote_host(sandbox):
    sandbox.without("docker")
    result = sandbox.run(str(sandbox.repo / "up.sh"), "--yes")
    assert result.returncode == 1 and "no docker CLI" in result.stderr
    result = sandbox.run(str(sandbox.repo / "up.sh"), "--yes", FAKE_DOCKER_HOST="ssh://u@h")
    assert result.returncode == 0, result.stderr
    assert "was not checked" in result.stderr


def test_up_installs_requirements_into_venv_unless_skipped(sandbox):
    result = sandbox.run(str(sandbox.repo / "up.sh"), CONVEX_SELFHOST_SKIP_INSTALL=None)
    assert result.returncode == 0, result.stderr
    calls = sandbox.calls()
    assert "python3 -m venv venv" in calls
    assert "venv/bin/python -m pip install --quiet -r requirements.txt" in calls
    assert calls.index("venv/bin/python -m pip install --quiet -r requirements.txt") \
        < calls.index("pulumi up --yes --skip-preview --stack dev --refresh")
    # then recovery from an interrupted run, with the project's virtualenv, before the update
    assert calls.index("venv/bin/python -m pip install --quiet -r requirements.txt") \
        < calls.index("venv/bin/python -m ops.recover dev") \
        < calls.index("pulumi up --yes --skip-preview --stack dev --refresh")
    sandbox.calls_file.unlink()
    sandbox.run(str(sandbox.repo / "up.sh"))  # CONVEX_SELFHOST_SKIP_INSTALL=1
    assert [c for c in sandbox.calls() if c.startswith(("python3", "venv/"))] == [
        "venv/bin/python -m ops.recover dev"]  # installs nothing


def test_up_script_refuses_clearly_without_pulumi(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # no pulumi, no docker
    (tmp_path / "dirname").symlink_to(shutil.which("dirname"))
    result = subprocess.run(["/bin/bash", str(REPO / "up.sh")], env=env, capture_output=True,
                            text=True, timeout=20)
    assert result.returncode == 1
    assert "the Pulumi CLI is not installed" in result.stderr
    assert "Traceback" not in result.stderr


# --- scripts/policy.sh -------------------------------------------------------------


def test_policy_installs_the_packs_virtualenv_then_previews_with_it(sandbox):
    result = sandbox.run(str(sandbox.repo / "scripts" / "policy.sh"), "staging", "--diff",
                         CONVEX_SELFHOST_SKIP_INSTALL=None)
    assert result.returncode == 0, result.stderr
    calls = sandbox.calls()
    assert calls.index("python3 -m venv policy/venv") < calls.index(
        "policy/venv/bin/python -m pip install --quiet -r policy/requirements.txt")
    assert "venv/bin/python -m pip install --quiet -r requirements.txt" in calls
    assert [c for c in calls if c.startswith("pulumi preview")] == [
        "pulumi preview --stack staging --policy-pack policy --diff"]
    assert pulumi_up_calls(calls) == []


def test_policy_preview_is_bounded_in_time(sandbox):
    (sandbox.repo / "policy" / "venv" / "bin").mkdir(parents=True)
    (sandbox.repo / "policy" / "venv" / "bin" / "python").write_text("")
    (sandbox.repo / "policy" / "venv" / "bin" / "python").chmod(0o755)
    result = sandbox.run(str(sandbox.repo / "scripts" / "policy.sh"), FAKE_HANG="1",
                         CONVEX_SELFHOST_POLICY_TIMEOUT="1")
    assert result.returncode == 124
    assert "did not finish within 1s" in result.stderr


def test_policy_without_its_virtualenv_or_stack_says_what_to_do(sandbox):
    result = sandbox.run(str(sandbox.repo / "scripts" / "policy.sh"))
    assert result.returncode == 1 and "policy/venv is missing" in result.stderr
    (sandbox.repo / "policy" / "venv" / "bin").mkdir(parents=True)
    (sandbox.repo / "policy" / "venv" / "bin" / "python").write_text("")
    (sandbox.repo / "policy" / "venv" / "bin" / "python").chmod(0o755)
    result = sandbox.run(str(sandbox.repo / "scripts" / "policy.sh"), "prod", FAKE_NO_STACK="1")
    assert result.returncode == 1 and "./up.sh prod" in result.stderr
    for args in (["dev", "--stack", "prod"], ["dev", "-C", "/x"], ["../x"],
                 ["dev", "--policy-pack", "/tmp/other"]):
        result = sandbox.run(str(sandbox.repo / "scripts" / "policy.sh"), *args)
        assert result.returncode == 1 and "error:" in result.stderr
    result = sandbox.run(str(sandbox.repo / "scripts" / "policy.sh"),
                         CONVEX_SELFHOST_POLICY_TIMEOUT="soon")
    assert result.returncode == 1 and "whole number of seconds" in result.stderr
    assert not [c for c in sandbox.calls() if c.startswith("pulumi preview")]


# --- scripts/upgrade.sh -------------------------------------------------------------


def make_app(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "package.json").write_text('{"dependencies": {"convex": "1.29.0"}}\n')
    return path


def upgrade(sandbox, *args, cwd=None, **extra):
    extra.setdefault("OLD_VERSION", "aaa")
    return sandbox.run(str(sandbox.repo / "scripts" / "upgrade.sh"), *args, cwd=cwd, **extra)


def test_upgrade_from_another_directory_backs_up_outside_the_repo_then_previews(sandbox):
    app = make_app(sandbox.root / "work" / "app")
    caller = sandbox.root / "work" / "elsewhere"
    caller.mkdir()
    result = upgrade(sandbox, "prod", "bbb", "--app-dir", "../app", cwd=caller)
    assert result.returncode == 0, result.stderr
    calls = sandbox.calls()
    env_list = next(i for i, c in enumerate(calls) if c.startswith("npx convex env list"))
    export = next(i for i, c in enumerate(calls) if c.startswith("npx convex export"))
    set_version = calls.index("pulumi config set version bbb --stack prod")
    preview = calls.index("pulumi preview --diff --stack prod")
    assert env_list < export < set_version < preview
    assert pulumi_up_calls(calls) == []
    for i in (env_list, export):  # in the app dir, relative to the caller; right URL and key
        assert calls[i].endswith(f"| cwd={app.resolve()} "
                                 "url=https://api.convex.example.com key=yes")

    backups = sandbox.home / "convex-backups" / "prod"
    (backup,) = backups.iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}Z", backup.name)
    assert f"convex export --path {backup.resolve()}/snapshot.zip --include-file-storage" \
        in calls[export]
    assert (backup / "snapshot.zip").read_text() == "PK"
    env_txt = backup / "env.txt"
    assert env_txt.read_text() == "AUTH_SECRET=from-the-deployment\n"
    assert stat.S_IMODE(env_txt.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    assert not (sandbox.repo / "backups").exists() and not (app / "backups").exists()

    output = result.stdout + result.stderr
    assert ADMIN_KEY not in output and "01deadbeefcafe" not in output
    assert ADMIN_KEY not in sandbox.calls_file.read_text()
    assert "pulumi config set version aaa --stack prod" in result.stdout  # how to undo
    assert str(backup.resolve()) in result.stdout


def test_upgrade_takes_the_app_dir_as_third_argument_or_the_current_directory(sandbox):
    app = make_app(sandbox.root / "app")
    result = upgrade(sandbox, "prod", "bbb", "app", cwd=sandbox.root)
    assert result.returncode == 0, result.stderr
    assert f"cwd={app.resolve()} " in next(c for c in sandbox.calls() if c.startswith("npx"))
    sandbox.calls_file.unlink()
    result = upgrade(sandbox, "prod", "bbb", cwd=app)
    assert result.returncode == 0, result.stderr
    assert f"cwd={app.resolve()} " in next(c for c in sandbox.calls() if c.startswith("npx"))


def test_upgrade_backup_dir_is_relative_to_the_caller(sandbox):
    make_app(sandbox.root / "app")
    result = upgrade(sandbox, "prod", "bbb", "--app-dir", "app", "--backup-dir", "safe",
                     cwd=sandbox.root)
    assert result.returncode == 0, result.stderr
    (backup,) = (sandbox.root / "safe" / "prod").iterdir()
    assert (backup / "snapshot.zip").exists()


@pytest.mark.skipif(not shutil.which("git"), reason="git is not installed")
def test_upgrade_refuses_a_backup_dir_in_the_repo_unless_ignored(sandbox):
    subprocess.run(["git", "init", "-q", str(sandbox.repo)], check=True, timeout=20)
    make_app(sandbox.root / "app")
    result = upgrade(sandbox, "prod", "bbb", "--app-dir", "app",
                     "--backup-dir", str(sandbox.repo / "dumps"), cwd=sandbox.root)
    assert result.returncode == 1
    assert "not git-ignored" in result.stderr and "never be committed" in result.stderr
    assert sandbox.calls() == []  # refused before anything ran
    assert not (sandbox.repo / "dumps").exists()

    # .gitignore ignores backups/: allowed there.
    result = upgrade(sandbox, "prod", "bbb", "--app-dir", "app",
                     "--backup-dir", str(sandbox.repo / "backups"), cwd=sandbox.root)
    assert result.returncode == 0, result.stderr
    assert list((sandbox.repo / "backups" / "prod").iterdir())


def test_upgrade_names_missing_tools_before_doing_anything(sandbox):
    sandbox.without("npx", "node")
    make_app(sandbox.root / "app")
    result = upgrade(sandbox, "prod", "bbb", "--app-dir", "app")
    assert result.returncode == 1
    assert "needs node npx" in result.stderr and "Node.js" in result.stderr
    assert "command not found" not in result.stderr
    assert sandbox.calls() == []
    sandbox.without("pulumi")
    result = upgrade(sandbox, "prod", "bbb", "--app-dir", "app")
    assert "needs pulumi node npx" in result.stderr and "pulumi.com" in result.stderr


def test_upgrade_refuses_an_app_dir_that_is_not_a_convex_app(sandbox):
    (sandbox.root / "empty").mkdir()
    result = upgrade(sandbox, "prod", "bbb", "--app-dir", "empty")
    assert result.returncode == 1 and "no package.json" in result.stderr
    result = upgrade(sandbox, "prod", "bbb", "--app-dir", "missing")
    assert result.returncode == 1 and "does not exist" in result.stderr
    assert sandbox.calls() == []


def test_upgrade_stops_before_changing_anything_when_the_backup_fails(sandbox):
    make_app(sandbox.root / "app")
    result = upgrade(sandbox, "prod", "bbb", "--app-dir", "app", NPX_FAIL="1")
    assert result.returncode != 0
    assert not any("config set" in c or c.startswith("pulumi preview") for c in sandbox.calls())


def test_upgrade_refuses_a_stack_of_many_deployments(sandbox):
    make_app(sandbox.root / "app")
    result = upgrade(sandbox, "preview", "bbb", "--app-dir", "app",
                     BACKEND_URL='{"pr-1": "http://x"}')
    assert result.returncode == 1
    assert "no single backendUrl" in result.stderr
    assert not any("config set" in c or c.startswith("npx") for c in sandbox.calls())


def test_upgrade_same_version_and_usage(sandbox):
    make_app(sandbox.root / "app")
    result = upgrade(sandbox, "prod", "aaa", "--app-dir", "app")
    assert result.returncode == 1 and "already runs aaa" in result.stderr
    result = upgrade(sandbox, "prod")
    assert result.returncode == 2 and "usage:" in result.stderr
    result = upgrade(sandbox, "prod", "bbb", "--bogus")
    assert result.returncode == 2 and "unknown option --bogus" in result.stderr


# --- the README and the repository --------------------------------------------------

README = (REPO / "README.md").read_text()


def test_the_two_commands_exist_and_ci_runs_the_readme_test_command():
    assert "./up.sh        # set up a virtualenv, then `pulumi up` the dev stack" in README
    assert "./test.sh      # install into .venv-test and run the test suite" in README
    for script in ("up.sh", "test.sh", ".ci/run", "scripts/upgrade.sh"):
        assert os.access(REPO / script, os.X_OK), script
    for script in ("up.sh", "test.sh", ".ci/run", "scripts/upgrade.sh", "env.sh"):
        subprocess.run(["bash", "-n", str(REPO / script)], check=True, timeout=20)
    assert "./test.sh" in (REPO / ".ci" / "run").read_text()


def test_scripts_take_state_settings_from_env_sh_only():
    assert ". ./env.sh" in (REPO / "up.sh").read_text()
    assert '. "$repo/env.sh"' in (REPO / "scripts" / "upgrade.sh").read_text()
    for script in ("up.sh", "scripts/upgrade.sh"):
        assert "PULUMI_BACKEND_URL=" not in (REPO / script).read_text(), script
    assert "CONVEX_SELFHOST_SKIP_INSTALL" in (REPO / "up.sh").read_text().split("set -e")[0]


def test_readme_commands_rely_on_env_sh():
    assert "\n. ./env.sh" in README
    # No hand-made backend or passphrase exports that could disagree with env.sh.
    assert not re.search(r"export PULUMI_BACKEND_URL=file://", README)
    assert not re.search(r"PULUMI_CONFIG_PASSPHRASE_FILE=\$PWD", README)
    for section in ("## Team setup", "### Logs", "### Tear down", "### Backups", "### Status",
                    "### Restore drill", "### Recover from an interrupted run",
                    "## Troubleshooting"):
        assert section in README
    assert "docker logs -f convex-dev-backend" in README
    assert "ssh -L 6791:127.0.0.1:6791 -L 3210:127.0.0.1:3210 user@host" in README
    assert "pulumi stack change-secrets-provider" in README


def test_gitignore_keeps_state_secrets_and_backups_out():
    ignored = (REPO / ".gitignore").read_text().split()
    for entry in (".pulumi-state/", ".env.local", "backups/"):
        assert entry in ignored


@pytest.mark.parametrize("arg", ["--refresh=false", "--refresh", "-r", "-r=false"])
def test_up_refreshes_unless_the_caller_says_how(sandbox, arg):
    result = sandbox.run(str(sandbox.repo / "up.sh"), "staging", "--yes", arg)
    assert result.returncode == 0, result.stderr
    assert pulumi_up_calls(sandbox.calls()) == [f"pulumi up --yes --stack staging {arg}"]
