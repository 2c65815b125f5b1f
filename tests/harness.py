"""Runs the real Pulumi program (`__main__.py`) under the SDK's mock engine.

`evaluate(stack)` builds the config the Pulumi CLI would hand the program for
`stacks/Pulumi.<stack>.yaml` (Pulumi.yaml defaults applied, every value a string,
arrays as JSON), runs the program, and returns every registered resource with its
inputs, options and dependencies, plus the resolved stack outputs and their secretness.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import hashlib
import json
import logging
import os
import runpy
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional
from unittest import mock

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.stack import wait_for_rpcs

from components.docker import health as health_module

REPO = Path(__file__).resolve().parents[1]
PROJECT = "convex-selfhost"
STACKS = sorted(p.name.split(".")[1] for p in (REPO / "stacks").glob("Pulumi.*.yaml"))
# The stack files this project ships as examples (documented, with golden snapshots); a
# user's own stack files (README: "Add an environment") are evaluated like them but need
# neither.
EXAMPLE_STACKS = ("dev", "dev-restore", "host", "kubernetes", "preview", "prod", "staging")
# The engine's wire form of a secret value (Pulumi's property-value spec, "Secrets"):
# {SIG_KEY: SECRET_SIG, "value": ...}. Spelled out here rather than read from SDK internals.
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
# A valid instance secret for adoption tests (not a real deployment's).
SAMPLE_SECRET = "5f" * 32


def project_file() -> dict:
    return yaml.safe_load((REPO / "Pulumi.yaml").read_text())


def stack_file(stack: str) -> dict:
    return yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text()) or {}


def cli_string(value: Any) -> str:
    """How the Pulumi CLI passes a config value to a Python program."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def stack_config(stack: Optional[str], overrides: Optional[Mapping[str, Any]] = None,
                 secrets: Optional[Mapping[str, str]] = None) -> tuple[dict[str, str], list[str]]:
    """Config for the program: project defaults, then the stack file, then overrides.

    `overrides` uses short or namespaced keys; a value of None removes the key.
    `secrets` are set as `pulumi config set --secret` would.
    """
    values: dict[str, Any] = {f"{PROJECT}:{name}": entry["default"]
                              for name, entry in project_file()["config"].items()
                              if "default" in entry}
    if stack is not None:
        values.update((stack_file(stack).get("config") or {}))

    def full(key: str) -> str:
        return key if ":" in key else f"{PROJECT}:{key}"

    for key, value in (overrides or {}).items():
        if value is None:
            values.pop(full(key), None)
        else:
            values[full(key)] = value
    for key, value in (secrets or {}).items():
        values[full(key)] = value
    return ({k: cli_string(v) for k, v in values.items()},
            [full(k) for k in (secrets or {})])


def config_json(stack: Optional[str], overrides: Optional[Mapping[str, Any]] = None,
                secrets: Optional[Mapping[str, str]] = None) -> str:
    """What `pulumi config --json --show-secrets` prints for the stack file (+ overrides)."""
    values, secret_keys = stack_config(stack, overrides, secrets)
    return json.dumps({key: {"value": value, "secret": key in secret_keys}
                       for key, value in values.items()})


@dataclass
class Registered:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict  # secrets unwrapped
    raw: dict  # as sent to the engine: secret values wrapped in the secret signature
    protect: bool
    delete_before_replace: bool
    retain_on_delete: bool
    dependencies: list[str]
    additional_secret_outputs: list[str]
    provider: str
    replace_on_changes: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    resources: list[Registered]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    warnings: list[str] = field(default_factory=list)
    component_outputs: dict[str, dict] = field(default_factory=dict)
    # The health waits the program ran: (container name, engine address, timeout).
    health_waits: list[tuple] = field(default_factory=list)

    def of_type(self, type_token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_token]

    def named(self, name: str) -> Registered:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name}, got {len(matches)}"
        return matches[0]

    def by_urn(self, urn: str) -> Registered:
        return next(r for r in self.resources if r.urn == urn)

    def containers(self) -> dict[str, Registered]:
        return {r.inputs["name"]: r for r in self.of_type("docker:index/container:Container")}

    def env(self, container_name: str) -> dict[str, str]:
        entries = self.containers()[container_name].inputs.get("envs") or []
        return dict(entry.split("=", 1) for entry in entries)


NETWORK = "command:local:Command"  # a deployment's network (components/docker/network.py)
NAMED_DOCKER_TYPES = ("docker:index/container:Container", "docker:index/volume:Volume", NETWORK)


def physical_name(resource: "Registered") -> str:
    """The Docker name of a container, volume or network resource."""
    if resource.type == NETWORK:
        return shlex.split(resource.inputs["create"])[-1]
    return resource.inputs["name"]


def fake_digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


class EchoMocks(pulumi.runtime.Mocks):
    """The simplest mocks: every resource's outputs are just its inputs."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class Mocks(EchoMocks):
    """Deterministic provider outputs: the same program gives the same values."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        resource_id, outputs = super().new_resource(args)
        if args.typ == "docker:index/remoteImage:RemoteImage":
            digest = fake_digest("image", args.inputs["name"])
            outputs.update(imageId=f"sha256:{digest}",
                           repoDigest=f"{args.inputs['name'].split(':')[0]}@sha256:{digest}")
        elif args.typ == "random:index/randomBytes:RandomBytes":
            raw = bytes.fromhex(fake_digest("bytes", args.name))[: int(args.inputs["length"])]
            outputs.update(hex=raw.hex(), base64=base64.b64encode(raw).decode())
        elif args.typ == "random:index/randomPassword:RandomPassword":
            outputs.update(result=fake_digest("password", args.name)[: int(args.inputs["length"])])
        return resource_id, outputs


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registered: list[Registered] = []
        self.component_outputs: dict[str, dict] = {}  # URN -> register_outputs, as sent

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            raw = json_format.MessageToDict(request.object)
            self.registered.append(Registered(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent,
                custom=request.custom,
                inputs=_unwrap(raw),
                raw=raw,
                protect=request.protect,
                delete_before_replace=request.deleteBeforeReplace,
                retain_on_delete=request.retainOnDelete,
                dependencies=list(request.dependencies),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                provider=request.provider,
                replace_on_changes=list(request.replaceOnChanges),
                ignore_changes=list(request.ignoreChanges),
            ))
        return response

    def RegisterResourceOutputs(self, request):
        self.component_outputs[request.urn] = json_format.MessageToDict(request.outputs)
        return super().RegisterResourceOutputs(request)


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return _unwrap(value.get("value"))
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def evaluate(stack: Optional[str] = "dev", overrides: Optional[Mapping[str, Any]] = None,
             secrets: Optional[Mapping[str, str]] = None, stack_name: Optional[str] = None,
             program: Path = REPO / "__main__.py",
             mocks: Optional[pulumi.runtime.Mocks] = None,
             health: Optional[Callable[[str, str, int], object]] = None) -> Evaluation:
    """Run the program for a stack file (or none) under the mock engine. The health gates'
    waits (`pulumi up` runs them) are recorded instead of asking Docker; `health`, if
    given, is called for each (and may raise HealthGateError)."""
    config, secret_keys = stack_config(stack, overrides, secrets)
    name = stack_name or stack or "test"
    # Each run gets fresh Pulumi runtime state (settings, root stack, config).
    return contextvars.copy_context().run(_run, name, config, secret_keys, program,
                                          mocks or Mocks(), health)


def _run(stack: str, config: dict, secret_keys: list, program: Path,
         mocks: pulumi.runtime.Mocks, health) -> Evaluation:
    loop = asyncio.new_event_loop()
    # A run that fails leaves futures holding its error. Whenever they are collected (even
    # while pytest compiles a module), asyncio reports "exception was never retrieved" by
    # formatting the traceback, which inside the compiler makes CPython 3.11 raise
    # "AST constructor recursion depth mismatch". The failure itself reaches the test.
    loop.set_exception_handler(lambda _loop, _context: None)
    asyncio.set_event_loop(loop)
    # Fresh runtime settings (no root stack, no tracked Output tasks): a previous run that
    # stopped on an error leaves tasks behind on its (closed) event loop.
    pulumi.runtime.reset_options(project=PROJECT, stack=stack, preview=False)
    monitor = RecordingMonitor(mocks)
    logger = logging.getLogger(f"convex-selfhost-test-{id(monitor)}")
    collector = _Collect()
    logger.addHandler(collector)
    logger.propagate = False
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=False,
                             logger=logger, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys)
    exports: dict[str, Any] = {}
    waits: list[tuple] = []

    def wait(name, docker_host, timeout_seconds):
        waits.append((name, docker_host, timeout_seconds))
        return health(name, docker_host, timeout_seconds) if health else "healthy"

    health_patch = mock.patch.object(health_module, "wait_until_healthy", wait)
    health_patch.start()
    try:
        with mock.patch.object(pulumi, "export", lambda k, v: exports.__setitem__(k, v)):
            runpy.run_path(str(program), run_name="__main__")
        outputs, secret_outputs = {}, set()
        for key, value in exports.items():
            output = pulumi.Output.from_input(value)
            outputs[key] = loop.run_until_complete(output.future())
            if loop.run_until_complete(output.is_secret()):
                secret_outputs.add(key)
        loop.run_until_complete(wait_for_rpcs())
    except Exception as error:
        # Lets tests prove that a configuration error stopped the program before any
        # resource was declared.
        error.registered = monitor.registered
        raise
    finally:
        health_patch.stop()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        logger.removeHandler(collector)
        asyncio.set_event_loop(None)
        loop.close()
    return Evaluation(monitor.registered, outputs, secret_outputs, collector.messages,
                      monitor.component_outputs, waits)


def assert_matches_golden(path: Path, text: str) -> None:
    """`text` must equal the committed golden file; UPDATE_GOLDEN=1 rewrites it first."""
    test_file = os.environ.get("PYTEST_CURRENT_TEST", "tests/").split("::")[0]
    hint = f"UPDATE_GOLDEN=1 ./test.sh {test_file} rewrites it; review the diff"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path.relative_to(REPO)}: {hint}"
    assert text == path.read_text(), f"{path.relative_to(REPO)} changed; if intended, {hint}"


def is_secret_value(raw) -> bool:
    """True when a raw (wire-form) input value is wrapped as a secret."""
    return isinstance(raw, dict) and raw.get(SIG_KEY) == SECRET_SIG
