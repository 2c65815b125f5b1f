"""A fresh clone of the repository in which tests/test_procedures.py runs the README's
commands as written, on a real Pulumi engine and a real Docker engine.

The clone is `git clone` of this repository (its committed HEAD, not the working tree),
with its own `.pulumi-state/` and generated passphrase (`env.sh` makes them), its own
`venv/` (`./up.sh` makes it) and its own HOME, so `~/convex-backups` and the upgrade
tool's backups land in the test's temporary directory. Nothing of the developer's
environment that would point the commands elsewhere is passed on (a state backend, a
passphrase, an admin key, the unit tests' engine pretences, the opt-in variable itself,
so the clone's own `./test.sh` never recurses into these tests).

Every stack gets ports nobody else on the machine holds, and is removed afterwards through
Docker by its label `convex-selfhost.stack=<stack>` (containers, networks, volumes), so a
failed step leaves nothing running, whatever the state of the clone's Pulumi state.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
STACK_LABEL = "convex-selfhost.stack"
# What the clone must not inherit from the shell that runs the tests.
DROPPED_ENV = ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE",
               "CONVEX_SELF_HOSTED_ADMIN_KEY", "CONVEX_SELF_HOSTED_URL", "CONVEX_DEPLOYMENT",
               "CONVEX_SELFHOST_DOCKER_API_VERSION", "CONVEX_SELFHOST_PORT_CHECK",
               "CONVEX_SELFHOST_SKIP_INSTALL", "CONVEX_SELFHOST_INTEGRATION", "VIRTUAL_ENV",
               "PYTHONPATH", "PULUMI_STACK")
PORT_KEYS = ("backendPort", "sitePort", "dashboardPort")
# Lines worth showing from a command's output (never a secret: no --show-secrets output is
# printed).
_SHOWN = re.compile(r"^\s*([+~-]|\+-|-\+)?\s*\d+ (created|updated|deleted|replaced|unchanged|"
                    r"to create|to update|to delete|to replace)|error|FAIL|ok  |all checks|"
                    r"recover:|warning:|protected|Duration|convex-backup|restore|\[mandatory\]|"
                    r"RUST_LOG|upgrade|passed|failed|not applied|Policies|snapshot-", re.I)


@dataclass
class Done:
    command: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _real_home() -> Path:
    return Path(os.path.expanduser("~"))


def clean_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    real = _real_home()
    # A HOME of its own; the caches and Pulumi's plugins stay where they are (PULUMI_HOME,
    # when the engine's activate.sh set it, already points there).
    env.setdefault("PULUMI_HOME", str(real / ".pulumi"))
    env.setdefault("PIP_CACHE_DIR", str(real / ".cache" / "pip"))
    env.setdefault("npm_config_cache", str(real / ".npm"))
    env["HOME"] = str(home)
    return env


class Clone:
    def __init__(self, root: Path):
        self.root = root
        self.path = root / "convex-selfhost"
        self.home = root / "home"
        self.home.mkdir(parents=True)
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(self.path)], check=True,
                       capture_output=True, timeout=120)
        self.head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=self.path,
                                   capture_output=True, text=True, check=True).stdout.strip()
        self.env = clean_env(self.home)
        self.readme = (self.path / "README.md").read_text()
        print(f"\nclone of {REPO} at {self.head} in {self.path}")

    # --- running commands ---------------------------------------------------------

    def sh(self, script: str, *, day2: bool = True, check: bool = True, timeout: float = 600,
           quiet: bool = False, env: Optional[dict] = None) -> Done:
        """Run `script` with bash in the clone's root, stopping at the first failing command.
        day2: after `. ./env.sh`, as the README's Day 2 says its commands run."""
        body = (". ./env.sh\n" if day2 else "") + script
        started = time.monotonic()
        process = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", body], cwd=self.path,
                                   env=env or self.env, text=True, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(process)
            stdout, stderr = process.communicate()
            stderr += f"\n(test: stopped after {timeout:.0f}s)"
            process.returncode = 124
        done = Done(script, process.returncode, stdout, stderr, time.monotonic() - started)
        show(done, quiet)
        if check and done.returncode != 0:
            raise AssertionError(f"exit {done.returncode}: {script}\n{tail(done.output, 60)}")
        return done

    def outputs(self, stack: str) -> dict:
        done = self.sh(f"pulumi stack output --json --show-secrets --stack {stack}", quiet=True)
        return json.loads(done.stdout)

    def config(self, stack: str) -> dict:
        done = self.sh(f"pulumi config --json --stack {stack}", quiet=True)
        return {k.split(":", 1)[1]: v.get("value") for k, v in json.loads(done.stdout).items()}

    # --- the README -----------------------------------------------------------------

    def readme_block(self, heading: str, index: int = 0) -> str:
        """The index-th ```sh block of the README section under `heading`."""
        match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", self.readme,
                          re.M | re.S)
        assert match, f"README has no section {heading!r}"
        blocks = re.findall(r"^```sh\n(.*?)^```", match.group(1), re.M | re.S)
        assert len(blocks) > index, f"README section {heading!r} has no sh block {index}"
        return blocks[index]

    def assert_documented(self, *texts: str) -> None:
        for text in texts:
            assert text in self.readme, f"the README no longer says {text!r}"

    # --- stacks ---------------------------------------------------------------------

    def new_stack_file(self, name: str, template: str, ports: tuple[int, int, int],
                       extra: Optional[dict] = None) -> Path:
        """README "Add an environment": copy a stack file, give it its own ports (and
        whatever else the test needs, as lines of the file)."""
        source = (self.path / "stacks" / f"Pulumi.{template}.yaml").read_text()
        for key, port in zip(PORT_KEYS, ports, strict=True):
            source, count = re.subn(rf"^(  convex-selfhost:{key}:) .*$", rf"\g<1> {port}",
                                    source, flags=re.M)
            assert count == 1, f"{template} has no {key}"
        for key, value in (extra or {}).items():
            source, count = re.subn(rf"^  convex-selfhost:{key}: .*\n", "", source, flags=re.M)
            source = source.rstrip("\n") + f"\n  convex-selfhost:{key}: {json.dumps(value)}\n"
        target = self.path / "stacks" / f"Pulumi.{name}.yaml"
        target.write_text(source)
        return target


def show(done: Done, quiet: bool = False) -> None:
    lines = [line.rstrip() for line in done.output.splitlines() if line.strip()]
    picked = [line for line in lines if _SHOWN.search(line)][-14:] or lines[-4:]
    command = "\n  ".join(done.command.strip().splitlines())
    print(f"\n$ {command}\n  -> exit {done.returncode} ({done.seconds:.0f}s)")
    if not quiet:
        for line in picked:
            print(f"     {line[:200]}")


def tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process group this test started (start_new_session=True)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def group_members(pgid: int) -> list[int]:
    """Processes (zombies included) still in a process group."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(stat_file.parent.name))
    return members


def wait_for_group_gone(pgid: int, timeout: float) -> float:
    started = time.monotonic()
    while group_members(pgid):
        assert time.monotonic() - started < timeout, \
            f"processes of group {pgid} still there after {timeout:.0f}s: {group_members(pgid)}"
        time.sleep(0.2)
    return time.monotonic() - started


def docker(*args: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          check=check)


def docker_objects(kind: str, stack: str) -> list[str]:
    """Names of the containers, volumes or networks labelled with the stack."""
    fmt = "{{.Names}}" if kind == "container" else "{{.Name}}"
    command = {"container": ["ps", "-a"], "volume": ["volume", "ls"],
               "network": ["network", "ls"]}[kind]
    done = docker(*command, "--filter", f"label={STACK_LABEL}={stack}", "--format", fmt)
    return done.stdout.split()


def remove_stack_objects(stack: str) -> list[str]:
    """Remove every container, network and volume labelled with the stack."""
    removed = []
    for kind, remove in (("container", ["rm", "-f"]), ("network", ["network", "rm"]),
                         ("volume", ["volume", "rm", "-f"])):
        names = docker_objects(kind, stack)
        if names:
            docker(*remove, *names, timeout=120)
            removed += names
    return removed


# --- ports ------------------------------------------------------------------------------

_reserved: set[int] = set()


def _published_ports() -> set[int]:
    ports = set()
    for line in docker("ps", "-a", "--format", "{{.Ports}}").stdout.splitlines():
        ports.update(int(p) for p in re.findall(r":(\d+)->", line))
        for low, high in re.findall(r":(\d+)-(\d+)->", line):
            ports.update(range(int(low), int(high) + 1))
    return ports


def _bindable(port: int) -> bool:
    for address in ("127.0.0.1", "0.0.0.0"):
        with socket.socket() as s:
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


def free_port_triple(start: int = 3400, stop: int = 3700) -> tuple[int, int, int]:
    """Three consecutive ports (API, HTTP actions, dashboard) nobody holds or published."""
    published = _published_ports()
    for base in range(start, stop, 10):
        triple = (base, base + 1, base + 2)
        if any(p in _reserved or p in published or not _bindable(p) for p in triple):
            continue
        _reserved.update(triple)
        return triple
    raise AssertionError(f"no three free ports between {start} and {stop}")


def ports_free(*ports: int) -> bool:
    published = _published_ports()
    return all(p not in published and _bindable(p) for p in ports)


# --- the backend stand-in's API, from outside ---------------------------------------------


def admin_call(url: str, key: str, path: str, body: Optional[dict] = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}{path}", data, {
        "Authorization": f"Convex {key}", "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as answer:
            text = answer.read().decode()
            return answer.status, json.loads(text) if text.strip() else {}
    except urllib.error.HTTPError as error:
        return error.code, {"error": error.read().decode("utf-8", "replace")[:500]}


def environment_variables(url: str, key: str) -> dict:
    status, answer = admin_call(url, key, "/api/query", {
        "path": "_system/cli/queryEnvironmentVariables", "args": {}, "format": "json"})
    assert status == 200 and answer.get("status") == "success", answer
    return {v["name"]: v["value"] for v in answer["value"]}


def set_environment_variables(url: str, key: str, variables: dict) -> None:
    status, answer = admin_call(url, key, "/api/update_environment_variables", {
        "changes": [{"name": k, "value": v} for k, v in variables.items()]})
    assert status == 200, answer


def table_rows(container: str, table: str) -> list[dict]:
    """The rows the backend stand-in keeps for a table (in its data volume)."""
    done = docker("exec", container, "cat", f"/convex/data/standin-tables/{table}.jsonl")
    if done.returncode != 0:
        return []
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def quoted(path: Path) -> str:
    return shlex.quote(str(path))
