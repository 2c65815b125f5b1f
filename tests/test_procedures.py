"""The README's procedures, each run as written in a fresh clone on a real Pulumi engine and
a real Docker engine with the stand-in images (opt-in, about 15 minutes in all):

    CONVEX_SELFHOST_INTEGRATION=1 ./test.sh tests/test_procedures.py -m integration -s

Opt-in like tests/test_integration.py (the same skip reasons: the variable, the Pulumi CLI,
a Docker engine that answers). One clone per module (tests/procedures.py): `git clone` of
the committed HEAD, its own `.pulumi-state/`, passphrase, `venv/` and HOME. Each test
uses stacks of its own (`dev-<token>-<role>`, ...; the restore drill's `dev-restore`
only when nothing of another `dev-restore` runs on the machine) on ports nobody holds,
copied from the committed stack files as "Add an environment" says, and removes every
container, network and volume labelled with them afterwards, pass or fail.

Commands are taken from the clone's README where the README shows them in a block (the
stack names swapped for the test's own, checked to occur), otherwise typed as the README
shows them and checked to be still documented. Where a command cannot run unchanged here
the change is the one the README itself allows: `--yes` where it asks at a terminal.

What the stand-ins cannot do, and what stands in for it (said again where it happens):
  * the backend stand-in logs no migrations, so in-place `ops.upgrade` would wait for its
    `db metadata version up to date at N` line until `--timeout`: the test writes that one
    line, marked synthetic, into the new backend container's log (PID 1's stdout);
  * the real `npx convex import` (convex 1.45.0 from npm) uploads the snapshot and then
    waits for the import on the sync protocol (a WebSocket), which the stand-in does not
    serve, so it never ends: export-import runs with a stand-in `npx` on PATH that makes
    the same import API requests through `ops/backup.py restore` (the tables arrive).
The environment-variable endpoints are served by the stand-in itself: no proxy is needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import threading
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from procedures import (
    Clone,
    docker,
    docker_objects,
    environment_variables,
    free_port_triple,
    kill_group,
    ports_free,
    quoted,
    remove_stack_objects,
    set_environment_variables,
    table_rows,
    wait_for_group_gone,
)
from test_integration import OLDER_VERSION, _ensure_images, integration_skip_reason

from components.releases import DEFAULT_VERSION

TOKEN = uuid.uuid4().hex[:4]
RESTORE_STACK = "dev-restore"
RESTORE_PORTS = (3240, 3241, 6821)
VARIABLES = {"FEATURE_FLAG": "on", "SECRET_TOKEN": "s3 cr3t\nsecond line"}
MESSAGES = [{"_id": "k17abc", "_creationTime": 1.0, "text": "hello"},
            {"_id": "k17abd", "_creationTime": 2.0, "text": "world"}]

STANDIN_NPX = r"""#!/usr/bin/env bash
# Stand-in `npx` for `npx --yes convex import ...`: the real CLI waits for the import on the
# sync protocol, which the backend stand-in does not serve. The same import API requests,
# made by the project's own client; each call is recorded (never the key).
set -euo pipefail
printf '%s|cwd=%s|url=%s\n' "$*" "$PWD" "${CONVEX_SELF_HOSTED_URL:-}" >> "$NPX_CALLS"
[ "${1:-}" = --yes ] && shift
if [ "${1:-}" != convex ] || [ "${2:-}" != import ]; then
  echo "stand-in npx: only 'npx convex import' is emulated, not: $*" >&2
  exit 2
fi
for file; do :; done
exec "$CLONE/venv/bin/python" "$CLONE/ops/backup.py" restore \
  --url "$CONVEX_SELF_HOSTED_URL" --file "$file" --yes --no-env
"""


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    reason = integration_skip_reason()
    if reason:
        pytest.skip(reason)
    _ensure_images()
    started = time.monotonic()
    yield Clone(tmp_path_factory.mktemp("procedures"))
    print(f"\nprocedures: {time.monotonic() - started:.0f}s in this module")


class Stacks:
    """The stacks a test made: removed afterwards through Docker (by label), and forgotten
    by the clone's state (the stack file stays, as with `--preserve-config`)."""

    def __init__(self, clone: Clone):
        self.clone = clone
        self.names: list[str] = []

    def new(self, role: str, template: str = "dev", prefix: str = "dev", **extra) -> str:
        name = f"{prefix}-{TOKEN}-{role}"
        self.add(name)
        self.clone.new_stack_file(name, template, free_port_triple(), extra)
        return name

    def add(self, name: str) -> str:
        self.names.append(name)
        return name

    def remove_all(self) -> None:
        for name in self.names:
            removed = remove_stack_objects(name)
            if name != RESTORE_STACK:  # names with the test's token are ours alone
                leftover = docker("volume", "ls", "-q", "--filter",
                                  f"name=^convex-{name}-").stdout.split()
                if leftover:
                    docker("volume", "rm", "-f", *leftover)
                    removed += leftover
            print(f"\ncleanup {name}: removed {', '.join(removed) or 'nothing'}")
            self.clone.sh(f"pulumi cancel --yes --stack {name} >/dev/null 2>&1 || true\n"
                          f"pulumi stack rm --yes --force --preserve-config --stack {name}",
                          check=False, quiet=True, timeout=120)


@pytest.fixture
def stacks(clone):
    made = Stacks(clone)
    yield made
    made.remove_all()


def _restore_stack_is_free() -> str | None:
    """Why dev-restore cannot be used here (someone else's runs), or None."""
    taken = [o for kind in ("container", "volume", "network")
             for o in docker_objects(kind, RESTORE_STACK)]
    if taken:
        return f"another {RESTORE_STACK} stack has Docker objects here: {', '.join(taken)}"
    if not ports_free(*RESTORE_PORTS):
        return f"the {RESTORE_STACK} ports {RESTORE_PORTS} are taken on this machine"
    return None


# --- helpers ----------------------------------------------------------------------------


def subst(text: str, replacements: dict) -> str:
    """Replace each README text by the test's own, failing when the README changed."""
    for old, new in replacements.items():
        assert old in text, f"the README block no longer contains {old!r}:\n{text}"
        text = text.replace(old, new)
    return text


def lines_of(block: str) -> list[str]:
    """A README block's commands, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", "", block)
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def up(clone: Clone, stack: str, *args: str, timeout: float = 600):
    return clone.sh(" ".join(["./up.sh", stack, *args]), day2=False, timeout=timeout)


def status_passes(clone: Clone, stack: str) -> None:
    done = clone.sh(f"./status.sh {stack}", day2=False)
    assert f"stack '{stack}': all checks passed" in done.output, done.output


def container_id(name: str) -> str:
    return docker("inspect", "--format", "{{.Id}}", name).stdout.strip()


def running_version(url: str) -> str:
    import urllib.request
    with urllib.request.urlopen(f"{url}/version", timeout=10) as answer:
        return answer.read().decode().strip()


def snapshot_zip(path: Path, tables: dict) -> Path:
    """A snapshot zip as the stand-in and `npx convex export` lay it out."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("_tables/documents.jsonl", "".join(
            json.dumps({"name": name, "id": index + 10001}) + "\n"
            for index, name in enumerate(tables)))
        for name, rows in tables.items():
            archive.writestr(f"{name}/documents.jsonl",
                             "".join(json.dumps(row) + "\n" for row in rows))
    return path


def seed(clone: Clone, stack: str) -> tuple[str, str]:
    """A table (imported through the backup client) and two environment variables."""
    out = clone.outputs(stack)
    url, key = out["backendUrl"], out["adminKey"]
    data = snapshot_zip(clone.root / f"seed-{stack}.zip", {"messages": MESSAGES})
    clone.sh(f"export CONVEX_SELF_HOSTED_ADMIN_KEY=$(pulumi stack output adminKey "
             f"--show-secrets --stack {stack})\n"
             f"venv/bin/python ops/backup.py restore --url {url} --file {quoted(data)} "
             "--yes --no-env")
    set_environment_variables(url, key, VARIABLES)
    assert table_rows(f"convex-{stack}-backend", "messages") == MESSAGES
    return url, key


# --- 1. quick start, then the tests ---------------------------------------------------


@pytest.mark.integration
def test_quick_start_then_the_test_suite(clone, stacks):
    """`./up.sh` (it rewrites the stack file: salt added, numbers quoted), then `./test.sh`.
    On `dev-restore`, a committed dev stack whose ports are free here (`dev` itself is in
    use on this machine), so the rewritten file is one the suite knows."""
    reason = _restore_stack_is_free()
    if reason:
        pytest.skip(reason)
    clone.assert_documented("./up.sh        # set up a virtualenv",
                            "./test.sh      # install into .venv-test and run the test suite",
                            "(`3210` becomes `\"3210\"`): both are fine to commit")
    stack_file = clone.path / "stacks" / f"Pulumi.{RESTORE_STACK}.yaml"
    stacks.add(RESTORE_STACK)
    up(clone, RESTORE_STACK)
    rewritten = stack_file.read_text()
    assert "encryptionsalt: " in rewritten and 'backendPort: "3240"' in rewritten, rewritten
    status_passes(clone, RESTORE_STACK)
    # The suite's type check of the stack files, on the file the CLI rewrote.
    done = clone.sh("./test.sh tests/test_project_files.py -q", day2=False)
    assert " passed" in done.output and "failed" not in done.output
    # The quick start's second command, as written: the whole suite.
    done = clone.sh("./test.sh", day2=False, check=False, timeout=900)
    failures = [line for line in done.output.splitlines() if line.startswith("FAILED")]
    assert done.returncode == 0, "after ./up.sh rewrote a stack file, ./test.sh fails:\n" + \
        "\n".join(failures or done.output.splitlines()[-30:])


# --- 2. a second environment ------------------------------------------------------------


@pytest.mark.integration
def test_add_an_environment(clone, stacks):
    clone.assert_documented("**Add an environment**: copy a stack file to "
                            "`stacks/Pulumi.<name>.yaml`, give it its own",
                            "a host port that another\ncontainer or process already holds is "
                            "reported before anything is created, naming the key")
    first = stacks.new("a")
    up(clone, first)
    first_ports = clone.config(first)
    # A copy of the first one's file, its ports not changed yet: refused before anything.
    second = stacks.add(f"qa-{TOKEN}")
    shutil.copy(clone.path / "stacks" / f"Pulumi.{first}.yaml",
                clone.path / "stacks" / f"Pulumi.{second}.yaml")
    done = clone.sh(f"./up.sh {second} --yes", day2=False, check=False)
    assert done.returncode != 0
    assert f"backendPort: port {first_ports['backendPort']} on 127.0.0.1 is already " \
           f"published by container 'convex-{first}-backend'" in done.output, done.output
    assert not docker_objects("container", second) and not docker_objects("volume", second)
    # Its own ports (the stack exists now, so `pulumi config set` works on it).
    ports = free_port_triple()
    clone.sh("\n".join(f"pulumi config set {key} {port} --stack {second}" for key, port in
                       zip(("backendPort", "sitePort", "dashboardPort"), ports, strict=True)))
    # Not a dev stack and no terminal: the preview only, and how to apply.
    done = clone.sh(f"./up.sh {second}", day2=False, check=False)
    assert done.returncode == 1 and "not applied" in done.output
    assert f"./up.sh {second} --yes" in done.output
    assert not docker_objects("container", second)
    up(clone, second, "--yes")
    out = clone.outputs(second)
    assert out["instanceName"] == f"convex-{second}"
    assert out["backendUrl"] == f"http://127.0.0.1:{ports[0]}"
    assert running_version(out["backendUrl"]) == DEFAULT_VERSION
    status_passes(clone, first)
    status_passes(clone, second)


# --- 3. change a setting and preview it -------------------------------------------------


@pytest.mark.integration
def test_change_a_setting_and_preview_it(clone, stacks):
    stack = stacks.new("change")
    up(clone, stack)
    backend, dashboard = f"convex-{stack}-backend", f"convex-{stack}-dashboard"
    before = container_id(backend), container_id(dashboard)
    block = subst(clone.readme_block("Change a setting and preview it"),
                  {"--stack staging": f"--stack {stack}", "./up.sh staging": f"./up.sh {stack}"})
    set_line, preview_line, up_line = lines_of(block)
    clone.sh(set_line)
    done = clone.sh(preview_line)
    assert re.search(r'~ RUST_LOG\s*: "info" => "debug"', done.output), done.output
    assert re.search(r"~ envs: \[\s*\n(\s*[+-] \[\d+\]: \[secret\]\s*\n)+\s*\]", done.output)
    assert "debug" not in done.output.split("pulumi:index:Stash")[0]
    clone.sh(up_line, day2=False)
    after = container_id(backend), container_id(dashboard)
    assert after[0] != before[0], "the backend container was not replaced"
    assert after[1] == before[1], "the dashboard was replaced for a backend setting"
    assert docker("exec", backend, "printenv", "RUST_LOG").stdout.strip() == "debug"
    clone.sh(f"pulumi preview --expect-no-changes --stack {stack}")
    status_passes(clone, stack)


# --- 4. the policy pack -----------------------------------------------------------------


@pytest.mark.integration
def test_policy_pack(clone, stacks):
    """Passes on a dev stack. Fails on a production-named stack with unprotected data
    (`protect-data-in-prod`). `pinned-images` cannot be broken through settings: outside
    dev stacks the settings refuse an unpinned image before the policy sees it, and in dev
    stacks both allow floating tags."""
    clone.assert_documented("scripts/policy.sh prod", "| `protect-data-in-prod` |")
    stack = stacks.new("policy")
    up(clone, stack)
    done = clone.sh(f"scripts/policy.sh {stack}", day2=False)
    assert "Policies:" in done.output and "[mandatory]" not in done.output
    prod = stacks.new("policy", prefix="prod")  # protectData false, from the dev file
    done = clone.sh(f"./up.sh {prod}", day2=False, check=False)  # creates it, applies nothing
    assert done.returncode == 1 and "not applied" in done.output
    done = clone.sh(f"scripts/policy.sh {prod}", day2=False, check=False)
    assert done.returncode != 0
    assert "[mandatory]  protect-data-in-prod" in done.output, done.output
    assert f"Volume 'convex-{prod}-data' (role data) in production stack '{prod}' is not " \
           "protected" in done.output
    assert not docker_objects("container", prod) and not docker_objects("volume", prod)


# --- 5. scheduled backups ---------------------------------------------------------------


@pytest.mark.integration
def test_scheduled_backup(clone, stacks):
    clone.assert_documented('convex-selfhost:backupSchedule: "0 3 * * *"',
                            "`snapshot-<UTC time>.zip`")
    stack = stacks.new("backup", backupSchedule="* * * * *", backupKeep=3)
    up(clone, stack)
    container = f"convex-{stack}-backup"
    deadline, listing = time.monotonic() + 90, []
    while time.monotonic() < deadline:
        listing = docker("exec", container, "ls", "/backups").stdout.split()
        if any(re.fullmatch(r"snapshot-\d{8}T\d{6}Z\.zip", f) for f in listing):
            break
        time.sleep(5)
    print(f"\n$ docker exec {container} ls /backups\n     {' '.join(listing)}")
    assert any(re.fullmatch(r"snapshot-\d{8}T\d{6}Z\.zip", f) for f in listing), listing
    assert any(f.endswith(".env.json") for f in listing), listing
    logs = docker("logs", container)
    assert "convex-backup ok file=snapshot-" in logs.stdout + logs.stderr
    done = clone.sh(f"./status.sh {stack}", day2=False)
    assert f"backup {container}: running, healthy" in done.output


# --- 6. the restore drill ---------------------------------------------------------------


@pytest.mark.integration
def test_restore_drill(clone, stacks):
    reason = _restore_stack_is_free()
    if reason:
        pytest.skip(reason)
    source = stacks.new("source")
    up(clone, source)
    seed(clone, source)
    # "By hand", into ~/convex-backups/prod as written (the test's HOME).
    by_hand = subst(clone.readme_block("Backups"), {"--stack prod": f"--stack {source}"})
    clone.sh(by_hand)
    backups = clone.home / "convex-backups" / "prod"
    (snapshot,) = backups.glob("snapshot-*.zip")
    assert (backups / snapshot.name.replace(".zip", ".env.json")).exists()
    drill = subst(clone.readme_block("Restore drill"), {
        "snapshot-20261126T030000Z.zip      # asks; --yes in scripts": f"{snapshot.name} --yes"})
    *body, teardown = lines_of(drill)
    assert teardown.startswith("pulumi destroy --yes --stack dev-restore"), teardown
    stacks.add(RESTORE_STACK)
    done = clone.sh("\n".join(body), day2=False)
    assert "convex-backup restore ok" in done.output and "documents=2" in done.output
    assert "stack 'dev-restore': all checks passed" in done.output
    out = clone.outputs(RESTORE_STACK)
    assert table_rows("convex-dev-restore-backend", "messages") == MESSAGES
    assert environment_variables(out["backendUrl"], out["adminKey"]) == VARIABLES
    clone.sh(teardown)
    assert not docker_objects("container", RESTORE_STACK)
    assert not docker_objects("volume", RESTORE_STACK)


# --- 7. upgrade, both modes -------------------------------------------------------------


def _inject_migration_line(container: str, version: str, database: int,
                           stop: threading.Event) -> None:
    """The stand-in logs no migrations: once the new release's container runs, write the
    line a migrated backend logs into its log (PID 1's stdout), marked synthetic."""
    # Containers are created from the image's id (RemoteImage.image_id), not its name.
    image = docker("image", "inspect", "--format", "{{.Id}}",
                   f"ghcr.io/get-convex/convex-backend:{version}").stdout.strip()
    while not stop.wait(0.5):
        state = docker("inspect", "--format", "{{.Image}} {{.State.Running}}", container)
        if state.stdout.split() == [image, "true"]:
            line = (f"(synthetic, written by the test: the stand-in logs no migrations) "
                    f"db metadata version up to date at {database}")
            docker("exec", container, "sh", "-c", f"echo '{line}' > /proc/1/fd/1")
            return


@pytest.mark.integration
def test_upgrade_in_place_and_by_export_import(clone, stacks):
    plan_block = clone.readme_block("Upgrade", 0)
    assert OLDER_VERSION in plan_block and DEFAULT_VERSION in plan_block
    in_place = stacks.new("inplace", template="staging", prefix="upg", version=OLDER_VERSION)
    by_import = stacks.new("import", template="staging", prefix="upg", version=OLDER_VERSION)
    for stack in (in_place, by_import):
        up(clone, stack, "--yes")
    urls = {}
    for stack in (in_place, by_import):
        urls[stack], _ = seed(clone, stack)
        assert running_version(urls[stack]) == OLDER_VERSION
    done = clone.sh(plan_block)
    match = re.search(r"database (\d+)\) -> \w+ \([-\d]+, database (\d+)\)", done.output)
    assert match, done.output
    target_database = int(match.group(2))

    run_in_place, run_import = lines_of(clone.readme_block("Upgrade", 1))
    run_in_place = subst(run_in_place, {"--stack prod": f"--stack {in_place}",
                                        "<new tag>": DEFAULT_VERSION})
    run_import = subst(run_import, {"--stack prod": f"--stack {by_import}",
                                    "<new tag>": DEFAULT_VERSION})

    app = clone.home / "src" / "my-app"  # --app-dir ~/src/my-app
    app.mkdir(parents=True)
    (app / "package.json").write_text('{"name": "my-app", "dependencies": '
                                      '{"convex": "1.45.0"}}\n')

    # In place, with the synthetic migration line.
    stop = threading.Event()
    injector = threading.Thread(target=_inject_migration_line, daemon=True, args=(
        f"convex-{in_place}-backend", DEFAULT_VERSION, target_database, stop))
    injector.start()
    try:
        done = clone.sh(run_in_place, timeout=600)
    finally:
        stop.set()
    assert f"upgraded {in_place} to {DEFAULT_VERSION[:12]}" in done.output, done.output
    assert "the backend accepts the admin key" in done.output
    assert running_version(urls[in_place]) == DEFAULT_VERSION
    logs = docker("logs", f"convex-{in_place}-backend")
    assert "data directory /convex/data is EXISTING" in logs.stdout + logs.stderr
    assert table_rows(f"convex-{in_place}-backend", "messages") == MESSAGES
    (backup,) = (clone.home / "convex-backups" / in_place).iterdir()
    for name in ("snapshot.zip", "snapshot.env.json", "upgrade.log"):
        assert stat.S_IMODE((backup / name).stat().st_mode) == 0o600, name
    clone.sh(f"pulumi preview --expect-no-changes --stack {in_place}")

    # By export and import: the new release on a new volume, the backup imported by the
    # stand-in npx, the environment variables set again by the upgrade itself.
    npx_dir = clone.root / "standin-bin"
    npx_dir.mkdir()
    (npx_dir / "npx").write_text(STANDIN_NPX)
    (npx_dir / "npx").chmod(0o755)
    calls = clone.root / "npx-calls"
    env = dict(clone.env, PATH=f"{npx_dir}{os.pathsep}{clone.env['PATH']}",
               NPX_CALLS=str(calls), CLONE=str(clone.path))
    done = clone.sh(run_import, env=env, timeout=600)
    assert f"upgraded {by_import} to {DEFAULT_VERSION[:12]}" in done.output, done.output
    new_volume = f"convex-{by_import}-data-{DEFAULT_VERSION[:7]}"
    assert docker("volume", "inspect", f"convex-{by_import}-data").returncode == 0
    assert docker("volume", "inspect", new_volume).returncode == 0
    logs = docker("logs", f"convex-{by_import}-backend")
    assert "data directory /convex/data is FRESH" in logs.stdout + logs.stderr
    (call,) = calls.read_text().splitlines()
    assert call.startswith("--yes convex import --replace-all --yes ") and f"cwd={app}|" in call
    assert running_version(urls[by_import]) == DEFAULT_VERSION
    out = clone.outputs(by_import)
    assert table_rows(f"convex-{by_import}-backend", "messages") == MESSAGES
    assert environment_variables(out["backendUrl"], out["adminKey"]) == VARIABLES
    clone.sh(f"pulumi preview --expect-no-changes --stack {by_import}")
    for stack in (in_place, by_import):
        status_passes(clone, stack)


# --- 8. tear down -----------------------------------------------------------------------


@pytest.mark.integration
def test_tear_down_unprotected_and_protected(clone, stacks):
    plain = stacks.new("down")
    guarded = stacks.new("down", template="staging", prefix="staging")
    up(clone, plain)
    up(clone, guarded, "--yes")

    destroy, listing, remove = lines_of(subst(clone.readme_block("Tear down", 0), {
        "--stack dev": f"--stack {plain}", "stack=dev ": f"stack={plain} ",
        "convex-dev-data": f"convex-{plain}-data"}))
    clone.sh(destroy)
    assert not docker_objects("container", plain) and not docker_objects("network", plain)
    done = clone.sh(listing)
    left = [line.split()[-1] for line in done.stdout.splitlines()[1:] if line.strip()]
    assert left == [f"convex-{plain}-data"], done.stdout
    clone.sh(remove)
    assert not docker_objects("volume", plain)

    # Protected: destroy stops at its preview and removes nothing.
    containers = {n: container_id(n) for n in docker_objects("container", guarded)}
    done = clone.sh(f"pulumi destroy --yes --stack {guarded}", check=False)
    assert done.returncode != 0  # the CLI wraps its message: compare words
    assert "cannot be deleted because it is protected" in " ".join(done.output.split())
    assert {n: container_id(n) for n in docker_objects("container", guarded)} == containers

    block = subst(clone.readme_block("Tear down", 1), {"staging": guarded})
    backup_line, unprotect, reapply, final = lines_of(block)
    # "with CONVEX_SELF_HOSTED_ADMIN_KEY set, as above" (Backups, by hand)
    clone.sh(f"export CONVEX_SELF_HOSTED_ADMIN_KEY=$(pulumi stack output adminKey "
             f"--show-secrets --stack {guarded})\n{backup_line}")
    assert list((clone.home / "convex-backups" / guarded).glob("snapshot-*.zip"))
    clone.sh(unprotect)
    done = clone.sh(reapply, day2=False)
    assert {n: container_id(n) for n in docker_objects("container", guarded)} == containers, \
        "lifting the protection restarted containers"
    clone.sh(final)
    assert not docker_objects("container", guarded)
    assert not docker_objects("network", guarded)
    assert docker_objects("volume", guarded) == [f"convex-{guarded}-data"]
    clone.sh(f"pulumi stack rm --preserve-config --yes {guarded}")
    assert (clone.path / "stacks" / f"Pulumi.{guarded}.yaml").exists()


# --- 9. an interrupted run ----------------------------------------------------------------


@pytest.mark.integration
def test_recover_from_an_interrupted_run(clone, stacks):
    clone.assert_documented("Run `./up.sh <stack>` again: it clears the lock")
    stack = stacks.new("killed")
    backend = f"convex-{stack}-backend"
    log = clone.root / f"up-{stack}.log"
    with open(log, "w") as out:
        process = subprocess.Popen(["./up.sh", stack], cwd=clone.path, env=clone.env,
                                   stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if docker("ps", "-aq", "--filter", f"name=^{backend}$").stdout.strip():
                break
            time.sleep(0.05)
        assert process.poll() is None, "up.sh ended before the backend container appeared:\n" \
            + log.read_text()[-3000:]
    finally:
        kill_group(process)  # kill -9 of ./up.sh's process group
        process.wait()
    # The killed pulumi, orphaned, is reaped by PID 1 (here about 2 s later; until then a
    # zombie, which `./up.sh`'s recovery takes for a live process): wait for that, as a
    # person typing the command again would.
    waited = wait_for_group_gone(process.pid, 60)
    print(f"\n$ ./up.sh {stack}   (killed with SIGKILL once {backend} existed; its "
          f"processes gone {waited:.1f}s later)\n     " +
          "\n     ".join(log.read_text().splitlines()[-5:]))
    locks = list((clone.path / ".pulumi-state" / ".pulumi" / "locks").rglob("*.json"))
    assert locks, "the interrupted run left no lock"
    state = json.loads(clone.sh(f"pulumi stack export --stack {stack}", quiet=True).stdout)
    pending = [op["resource"]["urn"].rsplit("::", 1)[-1]
               for op in state["deployment"].get("pending_operations") or []]
    print(f"     pending operations: {pending}")
    done = up(clone, stack)
    assert "recover: cleared the lock" in done.output, done.output
    if any(name.endswith("-backend-container") for name in pending):
        assert "adopted it" in done.output
    assert len(docker("ps", "-aq", "--filter", f"name=^{backend}$").stdout.split()) == 1
    status_passes(clone, stack)


# --- 10. drift ----------------------------------------------------------------------------


@pytest.mark.integration
def test_drift_is_seen_and_repaired(clone, stacks):
    clone.assert_documented("is\nseen by `./status.sh` and brought back by `./up.sh`")
    stack = stacks.new("drift")
    up(clone, stack)
    status_passes(clone, stack)
    backend, dashboard = f"convex-{stack}-backend", f"convex-{stack}-dashboard"
    for command in (["stop", dashboard], ["rm", "-f", backend]):
        docker(*command, check=True)
        print(f"\n$ docker {' '.join(command)}")
    done = clone.sh(f"./status.sh {stack}", day2=False, check=False)
    assert done.returncode == 1
    fails = [line for line in done.output.splitlines() if "FAIL" in line]
    assert any(backend in line for line in fails), done.output
    assert any(dashboard in line for line in fails), done.output
    # "A plain `pulumi preview` without `--refresh` ... cannot see it"
    clone.sh(f"pulumi preview --expect-no-changes --stack {stack}")
    up(clone, stack)
    status_passes(clone, stack)


def test_the_readme_has_the_sections_the_procedures_run():
    """Runs everywhere (no engine): the README sections whose blocks the procedures take."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for heading in ("Change a setting and preview it", "Restore drill", "Upgrade", "Tear down",
                    "Backups"):
        assert re.search(rf"^#+ {re.escape(heading)}\n", readme, re.M), heading

