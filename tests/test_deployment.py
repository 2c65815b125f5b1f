"""ConvexDeployment: secrets, adoption, providers, upgrades, many deployments."""

import json

from harness import NETWORK, REPO, SAMPLE_SECRET, evaluate, is_secret_value

from components.admin_key import check_admin_key

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
RANDOM_BYTES = "random:index/randomBytes:RandomBytes"


def test_generated_secret_is_32_random_bytes_protected_with_the_data():
    run = evaluate("staging")
    (secret,) = run.of_type(RANDOM_BYTES)
    assert secret.inputs == {"length": 32}
    assert secret.protect is True
    assert evaluate("dev").of_type(RANDOM_BYTES)[0].protect is False


def test_adopting_an_instance_secret_creates_none_and_keeps_keys_valid():
    run = evaluate("dev", {"instanceName": "convex-self-hosted",
                           "dataVolumeName": "self-hosted_data"},
                   {"instanceSecret": SAMPLE_SECRET})
    assert run.of_type(RANDOM_BYTES) == []
    assert run.outputs["instanceSecret"] == SAMPLE_SECRET
    assert "instanceSecret" in run.secret_outputs
    info = check_admin_key(run.outputs["adminKey"], "convex-self-hosted", SAMPLE_SECRET)
    assert info.member_id == 0
    assert run.env("convex-self-hosted-backend")["INSTANCE_SECRET"] == SAMPLE_SECRET
    (volume,) = run.of_type(VOLUME)
    # An adopted volume keeps its name and gets no labels; the labels, driver and options
    # docker-compose gave it are read back by the provider and must not force a replacement.
    assert volume.inputs == {"name": "self-hosted_data"}
    assert volume.ignore_changes == ["labels", "driver", "driverOpts"]
    assert volume.protect is False and volume.retain_on_delete


def test_network_joins_backend_and_dashboard():
    run = evaluate("dev")
    (network,) = run.of_type(NETWORK)
    assert network.inputs["create"].endswith(" convex-dev-network")
    for container in run.of_type(CONTAINER):
        assert container.inputs["networksAdvanced"][0]["name"] == "convex-dev-network"
        # It starts only once the network exists.
        assert network.urn in container.dependencies


def test_dashboard_can_be_turned_off():
    run = evaluate("dev", {"dashboard": False})
    assert set(run.containers()) == {"convex-dev-backend"}
    assert run.outputs["dashboardUrl"] is None


def test_explicit_provider_reaches_every_docker_resource():
    run = evaluate("dev", program=REPO / "tests" / "programs" / "explicit_provider.py")
    docker_resources = [r for r in run.resources if r.type.startswith("docker:index/")]
    assert docker_resources
    for resource in docker_resources:
        assert "::remote-host::" in resource.provider, resource.name


def test_version_bump_replaces_containers_only():
    before = evaluate("prod")
    after = evaluate("prod", {"version": "84bd27d0ed5e6e76e347cda552bf0be832caaf63"})
    old = {r.urn: r.raw for r in before.resources}
    new = {r.urn: r.raw for r in after.resources}
    assert old.keys() == new.keys()
    changed = {urn for urn in old if old[urn] != new[urn]}
    changed_names = {urn.rsplit("::", 1)[1] for urn in changed}
    assert changed_names == {"images-backend", "images-dashboard",
                             "convex-prod-backend-container",
                             "convex-prod-dashboard-container"}
    # Same admin keys: CI secrets do not churn on an upgrade.
    assert before.outputs == after.outputs


def test_each_deployment_is_independent_and_outputs_are_maps():
    run = evaluate("preview")
    assert set(run.outputs["instanceName"]) == {"pr-101", "pr-102"}
    assert run.secret_outputs == {"instanceSecret", "adminKey", "readOnlyAdminKey", "envLocal"}
    secrets = run.outputs["instanceSecret"]
    assert secrets["pr-101"] != secrets["pr-102"]
    for key in ("pr-101", "pr-102"):
        instance = f"convex-preview-{key}"
        assert run.outputs["instanceName"][key] == instance
        check_admin_key(run.outputs["adminKey"][key], instance, secrets[key])
    assert len(run.of_type(NETWORK)) == 2 and len(run.of_type(RANDOM_BYTES)) == 2
    # Both deployments run the same pulled images.
    assert len(run.of_type("docker:index/remoteImage:RemoteImage")) == 2
    assert len({c.inputs["image"] for c in run.of_type(CONTAINER)}) == 2
    volumes = {v.inputs["name"] for v in run.of_type(VOLUME)}
    assert volumes == {"convex-preview-pr-101-data", "convex-preview-pr-102-data"}


def test_adding_a_deployment_leaves_the_others_untouched():
    two = evaluate("preview")
    three = evaluate("preview", {"deployments": ["pr-101", "pr-102", "pr-103"]})
    old = {r.urn: r.raw for r in two.resources}
    new = {r.urn: r.raw for r in three.resources}
    assert all(new[urn] == raw for urn, raw in old.items())
    assert three.outputs["backendUrl"]["pr-103"] == "http://127.0.0.1:3320"


def test_version_bump_with_many_deployments_replaces_their_containers_only():
    before = evaluate("preview")
    after = evaluate("preview", {"version": "84bd27d0ed5e6e76e347cda552bf0be832caaf63"})
    old = {r.urn: r.raw for r in before.resources}
    changed = {r.type for r in after.resources if old[r.urn] != r.raw}
    assert changed == {"docker:index/remoteImage:RemoteImage", CONTAINER}


def test_readme_import_file_matches_the_declared_resources():
    readme = (REPO / "README.md").read_text()
    block = readme.split("`adopt.json` puts", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    wanted = json.loads(block)["resources"]
    run = evaluate(None, {"instanceName": "convex-self-hosted",
                          "dataVolumeName": "self-hosted_data"},
                   {"instanceSecret": SAMPLE_SECRET}, stack_name="selfhosted")
    by_name = {r.name: r for r in run.resources}
    for entry in wanted:
        declared = by_name[entry["name"]]
        assert declared.type == entry["type"]
        assert declared.custom == (not entry.get("component", False))
        if "parent" in entry:
            assert declared.parent == by_name[entry["parent"]].urn
        else:  # a top-level resource: its parent is the stack itself
            assert "::pulumi:pulumi:Stack::" in declared.parent
        if "id" in entry:
            assert declared.inputs["name"] == entry["id"]


def test_docker_host_reaches_every_health_gate_and_the_proxy_gets_its_ports():
    run = evaluate("prod", {"docker:host": "ssh://deploy@convex.example.com",
                            "backupSchedule": "0 3 * * *", "httpPort": 8080,
                            "httpsPort": 8443, "tlsBindAddress": "10.0.0.7"})
    names = {"convex-prod-postgres", "convex-prod-backend", "convex-prod-dashboard",
             "convex-prod-proxy", "convex-prod-backup"}
    gates = run.of_type("pulumi:index:Stash")
    assert {g.inputs["input"]["container_name"] for g in gates} == names
    # Each gate waited on the stack's engine, whose address is never recorded.
    assert {(name, host) for name, host, _ in run.health_waits} == {
        (name, "ssh://deploy@convex.example.com") for name in names}
    assert all("deploy@" not in repr(g.raw) for g in gates)
    # The network's command reaches the same engine; the address is a secret in the state.
    (network,) = run.of_type(NETWORK)
    assert network.inputs["environment"] == {"DOCKER_HOST": "ssh://deploy@convex.example.com"}
    assert is_secret_value(network.raw["environment"]["DOCKER_HOST"])
    containers = run.containers()
    proxy = containers["convex-prod-proxy"].inputs
    assert [(p["internal"], p["external"], p["ip"]) for p in proxy["ports"]] == [
        (80, 8080, "10.0.0.7"), (443, 8443, "10.0.0.7")]
    for name, container in containers.items():
        assert container.inputs["networksAdvanced"][0]["name"] == "convex-prod-network", name
        labels = {entry["label"]: entry["value"] for entry in container.inputs["labels"]}
        assert labels["convex-selfhost.stack"] == "prod", name
        assert labels["convex-selfhost.deployment"] == "convex-prod", name
