"""The real program, evaluated for every stack file under the mock engine."""

import pytest
from harness import (
    NAMED_DOCKER_TYPES,
    NETWORK,
    STACKS,
    EchoMocks,
    evaluate,
    fake_digest,
    is_secret_value,
    physical_name,
    stack_file,
)

from components.admin_key import check_admin_key
from components.settings import BACKEND_IMAGE, DASHBOARD_IMAGE, DEFAULT_VERSION, KEYS_BY_NAME

OUTPUT_NAMES = {"backendUrl", "siteUrl", "dashboardUrl", "instanceName", "instanceSecret",
                "adminKey", "readOnlyAdminKey", "envLocal"}
SECRET_OUTPUTS = {"instanceSecret", "adminKey", "readOnlyAdminKey", "envLocal"}
CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
IMAGE = "docker:index/remoteImage:RemoteImage"
GATE = "pulumi:index:Stash"


def configured(stack, key):
    """A stack file's value, typed as the CLI reads it (it quotes numbers and booleans
    when it rewrites the file: "3210", "false")."""
    value = (stack_file(stack).get("config") or {}).get(f"convex-selfhost:{key}")
    if value is None:
        return KEYS_BY_NAME[key].default
    kind = KEYS_BY_NAME[key].type
    if kind == "boolean" and isinstance(value, str):
        return value == "true"
    if kind == "integer" and isinstance(value, str):
        return int(value)
    return value


# The Docker target's stacks (the host target's are tests/test_host_target.py's).
DOCKER_STACKS = [s for s in STACKS if configured(s, "target") == "docker"]


@pytest.fixture(scope="module", params=DOCKER_STACKS)
def stack(request):
    return request.param


@pytest.fixture(scope="module")
def run(stack):
    return evaluate(stack)


def per_deployment(run, output):
    value = run.outputs[output]
    return value if isinstance(value, dict) else {run.outputs["instanceName"]: value}


def test_all_stacks_present():
    assert {"dev", "staging", "prod"} <= set(STACKS)


def test_stack_evaluates_without_warnings(run):
    assert run.warnings == []
    assert run.resources


def test_outputs_are_complete_and_secrets_are_secret(run):
    assert set(run.outputs) == OUTPUT_NAMES
    assert run.secret_outputs == SECRET_OUTPUTS


def test_admin_keys_decode_under_the_instance_secret(run):
    names = per_deployment(run, "instanceName")
    secrets = per_deployment(run, "instanceSecret")
    keys = per_deployment(run, "adminKey")
    read_only = per_deployment(run, "readOnlyAdminKey")
    for key, instance in names.items():
        info = check_admin_key(keys[key], instance, secrets[key])
        assert (info.member_id, info.read_only, info.system) == (0, False, False)
        info = check_admin_key(read_only[key], instance, secrets[key])
        assert info.read_only is True
        assert len(secrets[key]) == 64


def test_env_local_feeds_npx_convex(run):
    urls, keys = per_deployment(run, "backendUrl"), per_deployment(run, "adminKey")
    for key, env_local in per_deployment(run, "envLocal").items():
        assert env_local == (f"CONVEX_SELF_HOSTED_URL={urls[key]}\n"
                             f"CONVEX_SELF_HOSTED_ADMIN_KEY={keys[key]}\n")


def test_backend_container(run, stack):
    containers = run.containers()
    for key, instance in per_deployment(run, "instanceName").items():
        backend = containers[f"{instance}-backend"]
        inputs = backend.inputs
        image = run.named("images-backend")
        assert image.inputs["name"] == f"{BACKEND_IMAGE}:{configured(stack, 'version')}"
        assert inputs["image"] == f"sha256:{fake_digest('image', image.inputs['name'])}"
        assert image.urn in backend.dependencies
        assert {(p["internal"], p["ip"]) for p in inputs["ports"]} == {
            (3210, configured(stack, "bindAddress")), (3211, configured(stack, "bindAddress"))}
        assert inputs["volumes"][0]["containerPath"] == "/convex/data"
        health = inputs["healthcheck"]
        assert health["tests"] == ["CMD-SHELL", "curl -f http://localhost:3210/version"]
        # Go's Duration.String() spelling, as the provider reads it back.
        start = configured(stack, "backendStartTimeoutSeconds")
        assert health["startPeriod"] == {300: "5m0s", 900: "15m0s"}[start]
        assert (health["interval"], health["timeout"], health["startInterval"]) == (
            "5s", "5s", "1s")
        assert inputs["stopSignal"] == "SIGINT" and inputs["stopTimeout"] == 10
        assert inputs["destroyGraceSeconds"] == 10
        # The provider's wait would record an unhealthy container; the gate does not.
        assert "wait" not in inputs
        gate = run.named(f"{key}-backend-healthy")
        assert gate.type == GATE
        assert gate.inputs["input"]["container_name"] == f"{instance}-backend"
        assert (f"{instance}-backend", "", start) in run.health_waits
        assert backend.urn in gate.dependencies
        assert backend.replace_on_changes == ["healthcheck"]
        assert inputs["restart"] == "unless-stopped"
        assert inputs["logOpts"] == {"max-size": "10m", "max-file": "3"}
        env = run.env(f"{instance}-backend")
        assert env["INSTANCE_NAME"] == instance
        assert env["INSTANCE_SECRET"] == per_deployment(run, "instanceSecret")[key]
        assert env["CONVEX_CLOUD_ORIGIN"] == per_deployment(run, "backendUrl")[key]
        assert env["CONVEX_SITE_ORIGIN"] == per_deployment(run, "siteUrl")[key]
        # The entries carrying secrets are secret (the rest stay readable in a preview's
        # diff); the container's envs output is secret as a whole.
        raw = backend.raw["envs"]
        assert len(raw) == len(env)
        hidden = {entry["value"].split("=", 1)[0] for entry in raw if is_secret_value(entry)}
        shown = {entry.split("=", 1)[0] for entry in raw if isinstance(entry, str)}
        assert "INSTANCE_SECRET" in hidden and {"RUST_LOG", "INSTANCE_NAME"} <= shown
        assert not shown & {"POSTGRES_URL", "MYSQL_URL", "AWS_SECRET_ACCESS_KEY",
                            "AWS_ACCESS_KEY_ID"}
        assert "envs" in backend.additional_secret_outputs


def test_dashboard_follows_the_backend(run, stack):
    containers = run.containers()
    for key, instance in per_deployment(run, "instanceName").items():
        dashboard = containers[f"{instance}-dashboard"]
        env = run.env(f"{instance}-dashboard")
        assert env["NEXT_PUBLIC_DEPLOYMENT_URL"] == per_deployment(run, "backendUrl")[key]
        assert "NEXT_PUBLIC_ADMIN_KEY" not in env
        assert dashboard.inputs["ports"][0]["internal"] == 6791
        # Started beside the backend, not after its gate: it does not need it.
        assert run.named(f"{key}-backend-healthy").urn not in dashboard.dependencies
        assert containers[f"{instance}-backend"].urn not in dashboard.dependencies
        assert dashboard.inputs["healthcheck"]["tests"] == [
            "CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:6791/favicon.ico"]
        assert run.named(f"{key}-dashboard-healthy").inputs["input"]["container_name"] == \
            f"{instance}-dashboard"
        image = run.named("images-dashboard")
        assert image.inputs["name"] == f"{DASHBOARD_IMAGE}:{configured(stack, 'version')}"
        assert dashboard.inputs["image"] == f"sha256:{fake_digest('image', image.inputs['name'])}"


def test_named_containers_are_deleted_before_replacement(run):
    for container in run.of_type(CONTAINER):
        assert container.delete_before_replace, container.name


def test_data_volumes_are_retained_and_protected_as_configured(run, stack):
    protect = configured(stack, "protectData")
    data = [v for v in run.of_type(VOLUME) if v.name.endswith(("backend-data", "postgres-data"))]
    assert data
    for volume in data:
        assert volume.retain_on_delete, volume.name
        assert volume.protect is protect, volume.name


def test_independent_resources_have_no_dependencies(run):
    """Images, volumes, network and secret can all be created at once."""
    for resource in run.resources:
        if resource.type in (IMAGE, VOLUME, NETWORK,
                             "random:index/randomBytes:RandomBytes",
                             "random:index/randomPassword:RandomPassword"):
            assert resource.dependencies == [], resource.name


def test_backend_depends_only_on_its_inputs(run):
    for instance in per_deployment(run, "instanceName").values():
        backend = run.containers()[f"{instance}-backend"]
        kinds = {run.by_urn(urn).type for urn in backend.dependencies}
        assert kinds <= {IMAGE, VOLUME, NETWORK,
                         "random:index/randomBytes:RandomBytes", GATE,
                         "random:index/randomPassword:RandomPassword"}
        assert {IMAGE, VOLUME, NETWORK} <= kinds
        for urn in backend.dependencies:
            dependency = run.by_urn(urn)
            if dependency.type == GATE:
                assert dependency.inputs["input"]["container_name"] == f"{instance}-postgres"


def test_evaluation_is_reproducible(stack, run):
    again = evaluate(stack)
    assert again.outputs == run.outputs
    # Registration order depends on the event loop; the graph itself must not.
    assert ({r.urn: (r.raw, sorted(r.dependencies)) for r in again.resources}
            == {r.urn: (r.raw, sorted(r.dependencies)) for r in run.resources})


def test_stacks_share_one_docker_host_without_clashes():
    names, ports = {}, {}
    for stack in STACKS:
        run = evaluate(stack)
        for resource in run.resources:
            if resource.type in NAMED_DOCKER_TYPES:
                physical = (resource.type, physical_name(resource))
                assert physical not in names, f"{physical} in {stack} and {names.get(physical)}"
                names[physical] = stack
        for container in run.of_type(CONTAINER):
            for port in container.inputs.get("ports", []):
                assert port["external"] not in ports, (stack, port, ports.get(port["external"]))
                ports[port["external"]] = stack


def test_default_version_is_pinned_and_shared():
    run = evaluate(None, stack_name="anything")
    tags = {r.inputs["name"].rsplit(":", 1)[1] for r in run.of_type(IMAGE)}
    assert tags == {DEFAULT_VERSION}
    assert run.outputs["instanceName"] == "convex-anything"


@pytest.mark.parametrize("stack", STACKS)
def test_program_survives_mocks_that_only_echo_inputs(stack):
    """Engines that report no provider outputs (plain mocks) still get a full graph."""
    run = evaluate(stack, mocks=EchoMocks())
    workloads = run.of_type("kubernetes:apps/v1:StatefulSet")
    assert run.containers() or workloads or configured(stack, "target") == "host"
    assert set(run.outputs) == OUTPUT_NAMES
    assert run.secret_outputs == SECRET_OUTPUTS
    # No secret reported: no keys, and no .env.local holding a key of "None".
    keyed = [run.outputs[k] for k in ("adminKey", "readOnlyAdminKey", "envLocal")]
    assert keyed == [None] * 3 or all(set(v.values()) == {None} for v in keyed)
    adopted = evaluate(stack, secrets={"instanceSecret": "5f" * 32}, mocks=EchoMocks()) \
        if stack != "preview" else None
    if adopted:
        check_admin_key(adopted.outputs["adminKey"], adopted.outputs["instanceName"], "5f" * 32)


def test_configured_reads_stack_files_as_the_cli_rewrites_them(monkeypatch):
    import test_main
    monkeypatch.setattr(test_main, "stack_file", lambda stack: {"config": {
        "convex-selfhost:protectData": "false", "convex-selfhost:backendPort": "3240"}})
    assert configured("x", "protectData") is False and configured("x", "backendPort") == 3240
