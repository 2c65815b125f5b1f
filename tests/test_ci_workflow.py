"""examples/convex-deploy.workflow.yml: parsed and checked, since it never runs here."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from components.releases import CONVEX_NPM_VERSION

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILE = REPO / "examples" / "convex-deploy.workflow.yml"
TEXT = WORKFLOW_FILE.read_text()
WORKFLOW = yaml.safe_load(TEXT)
JOBS = WORKFLOW["jobs"]
PER_STACK = "${{ matrix.stack }}"


def runs(job):
    return [step.get("run", "") for step in JOBS[job]["steps"]]


def step_index(job, predicate):
    return next(i for i, step in enumerate(JOBS[job]["steps"]) if predicate(step))


def test_triggers_and_jobs():
    triggers = WORKFLOW.get("on", WORKFLOW.get(True))  # YAML 1.1 reads `on` as true
    assert triggers["pull_request"]["branches"] == ["main"]
    assert triggers["push"]["branches"] == ["main"]
    assert set(JOBS) == {"preview", "deploy"}
    assert "pull_request" in JOBS["preview"]["if"]
    assert "push" in JOBS["deploy"]["if"] and "refs/heads/main" in JOBS["deploy"]["if"]
    assert any("pulumi preview" in run for run in runs("preview"))
    assert not any("pulumi up" in run for run in runs("preview"))
    assert any("pulumi up --stack \"$STACK\" --yes" in run for run in runs("deploy"))
    assert WORKFLOW["permissions"] == {"contents": "read"}


def test_separate_concurrency_groups_and_deploys_are_never_cancelled():
    assert "concurrency" not in WORKFLOW  # per job, not one group for both
    preview, deploy = JOBS["preview"]["concurrency"], JOBS["deploy"]["concurrency"]
    assert preview["group"] != deploy["group"]
    assert preview["group"].startswith("convex-preview-")
    assert deploy["group"].startswith("convex-deploy-")
    assert PER_STACK in preview["group"] and PER_STACK in deploy["group"]
    assert deploy["cancel-in-progress"] is False
    assert preview["cancel-in-progress"] is True


@pytest.mark.parametrize("job", ["preview", "deploy"])
def test_every_job_runs_in_its_stacks_environment(job):
    # Environment secrets reach only jobs that name the environment; one per stack keeps
    # the same secret names apart between stacks.
    assert JOBS[job]["environment"] == PER_STACK
    assert JOBS[job]["strategy"]["matrix"]["stack"] == \
        "${{ fromJSON(vars.PULUMI_STACKS || '[\"staging\"]') }}"
    assert JOBS[job]["env"]["STACK"] == PER_STACK
    assert JOBS[job]["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


def test_no_secret_is_written_repository_wide():
    for run in runs("deploy"):
        for line in run.splitlines():
            if "gh secret set" in line:
                assert '--env "$STACK"' in line
                assert "--body" not in line  # values come from stdin


@pytest.mark.parametrize("job", ["preview", "deploy"])
def test_s3_state_backend_credentials_come_from_secrets(job):
    i = step_index(job, lambda s: "configure-aws-credentials" in s.get("uses", ""))
    step = JOBS[job]["steps"][i]
    assert "s3://" in step["if"]
    assert step["with"]["aws-access-key-id"] == "${{ secrets.AWS_ACCESS_KEY_ID }}"
    assert step["with"]["aws-secret-access-key"] == "${{ secrets.AWS_SECRET_ACCESS_KEY }}"
    assert i < step_index(job, lambda s: "pulumi stack select" in s.get("run", ""))


@pytest.mark.parametrize("job", ["preview", "deploy"])
def test_ssh_key_and_known_hosts_for_a_remote_docker_host(job):
    i = step_index(job, lambda s: "ssh-agent" in s.get("run", ""))
    step = JOBS[job]["steps"][i]
    assert step["env"] == {"SSH_KEY": "${{ secrets.DOCKER_SSH_KEY }}",
                           "SSH_KNOWN_HOSTS": "${{ secrets.DOCKER_SSH_KNOWN_HOSTS }}"}
    assert "ssh-add -" in step["run"] and "~/.ssh/known_hosts" in step["run"]
    assert "SSH_AUTH_SOCK" in step["run"] and "GITHUB_ENV" in step["run"]
    assert "StrictHostKeyChecking" not in step["run"]  # the host key is pinned, not skipped
    assert i < step_index(job, lambda s: "pulumi stack select" in s.get("run", ""))


def test_the_convex_cli_is_pinned_and_bumped_with_the_stack_version():
    version = WORKFLOW["env"]["CONVEX_NPM_VERSION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    # The release the default backend version shipped with.
    assert version == CONVEX_NPM_VERSION
    comments = " ".join(line.strip().lstrip("#").strip() for line in TEXT.splitlines()
                        if line.strip().startswith("#"))
    assert "bump together with the stack's `version`" in comments
    deploys = [line for run in runs("deploy") for line in run.splitlines()
               if "convex" in line and " deploy" in line and "npx" in line]
    assert deploys == ['npx --yes "convex@$CONVEX_NPM_VERSION" deploy']


def test_the_admin_key_is_masked_before_it_is_used():
    run = next(r for r in runs("deploy") if "stack output adminKey" in r)
    assert run.index("::add-mask::$admin_key") < run.index("GITHUB_ENV")
    read = step_index("deploy", lambda s: "stack output adminKey" in s.get("run", ""))
    up = step_index("deploy", lambda s: "pulumi up" in s.get("run", ""))
    deploy = step_index("deploy", lambda s: "convex@" in s.get("run", ""))
    assert up < read < deploy


def test_run_blocks_are_valid_bash():
    for job in JOBS:
        for run in runs(job):
            if run:
                subprocess.run(["bash", "-n"], input=run, text=True, check=True, timeout=20)
