"""Unit tests for the CrossGuard policy pack in policy/.

There is no Pulumi CLI here, so the policies are exercised the way
pulumi-policy's analyzer calls them: props are deserialized with
``deserialize_properties`` and wrapped with ``unknown_checking_proxy`` (as in
the analyzer's ``Analyze``/``AnalyzeStack``), and the args objects are
pulumi-policy's own ``ResourceValidationArgs`` / ``StackValidationArgs``.  A few
tests go all the way: they start the pack as the Pulumi CLI does (``python -m
pulumi.policy``, which runs ``policy/__main__.py``; it serves the analyzer over gRPC and
prints its port) and send it the engine's own protobuf requests.
"""

from __future__ import annotations

import ast
import copy
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY, deserialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from policy import convex_policies as cp

POLICY_DIR = Path(__file__).resolve().parent.parent / "policy"

REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"

BACKEND = "ghcr.io/get-convex/convex-backend"
DASHBOARD = "ghcr.io/get-convex/convex-dashboard"
SHA_TAG = "4d3b0a5de955a258e70e3813bbff486051d88820"
DIGEST = "sha256:" + "ab" * 32

EXPECTED_POLICY_NAMES = {
    "pinned-images",
    "convex-versions-match",
    "no-admin-key-in-dashboard",
    "protect-data-in-prod",
    "no-public-ports-without-tls",
    "secret-envs-are-secret",
    "single-convex-backend",
    "pinned-workload-images",
    "protect-claims-in-prod",
}


# ---------------------------------------------------------------------------
# helpers: build args exactly as pulumi_policy.policy does
# ---------------------------------------------------------------------------


class Violations:
    """report_violation collector with the ReportViolation signature."""

    def __init__(self):
        self.items = []

    def __call__(self, message, urn=None):
        assert isinstance(message, str) and message
        assert urn is None or isinstance(urn, str)
        self.items.append((message, urn))

    @property
    def messages(self):
        return [m for m, _ in self.items]

    @property
    def urns(self):
        return [u for _, u in self.items]

    def __len__(self):
        return len(self.items)


def urn(rtype, name, stack="dev"):
    return f"urn:pulumi:{stack}::convex-selfhost::{rtype}::{name}"


def analyze_props(wire, proxy_secrets=False):
    """Same as Analyze/AnalyzeStack: deserialize the wire props, then proxy unknowns."""
    return unknown_checking_proxy(deserialize_properties(copy.deepcopy(wire), proxy_secrets))


def options(protect=False, secret_outputs=()):
    return PolicyResourceOptions(
        protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), list(secret_outputs), None
    )


def resource_args(rtype, wire, name="res", opts=None, config=None, proxy_secrets=False,
                  stack="dev"):
    return ResourceValidationArgs(
        rtype,
        analyze_props(wire, proxy_secrets),
        urn(rtype, name, stack),
        name,
        opts or options(),
        None,
        config,
    )


def stack_resource(rtype, wire, name, protect=False, secret_outputs=()):
    return PolicyResource(
        rtype,
        analyze_props(wire),
        urn(rtype, name),
        name,
        options(protect, secret_outputs),
        None,
        None,
        [],
        {},
    )


def run(policy, args):
    v = Violations()
    result = policy.validate(args, v)
    assert result is None  # all validations are synchronous
    return v


def labels(stack="dev", deployment="main", role=None):
    out = [
        {"label": "convex-selfhost.stack", "value": stack},
        {"label": "convex-selfhost.deployment", "value": deployment},
    ]
    if role is not None:
        out.append({"label": "convex-selfhost.role", "value": role})
    return out


def image(name):
    return {"name": name, "keepLocally": True}


def container(name, role, envs=(), ports=(), stack="dev"):
    return {
        "name": name,
        "image": "sha256:" + "0" * 64,
        "envs": list(envs),
        "ports": list(ports),
        "labels": labels(stack=stack, role=role),
    }


def volume(name, role, stack):
    return {"name": name, "labels": labels(stack=stack, role=role)}


def secret(value):
    return {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": value}


# ---------------------------------------------------------------------------
# 1. pinned-images
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, expect",
    [
        (BACKEND, "has no tag"),
        (f"{BACKEND}:latest", "moving tag 'latest'"),
        ("postgres:main", "moving tag 'main'"),
        ("caddy:Master", "moving tag 'Master'"),
        ("caddy:stable", "moving tag 'stable'"),
        ("caddy:edge", "moving tag 'edge'"),
        ("caddy:nightly", "moving tag 'nightly'"),
        ("localhost:5000/convex-backend", "has no tag"),  # registry port is not a tag
        ("postgres@sha256:abc", "digest that is not sha256"),
        ("caddy:dev", "moving tag 'dev'"),
        ("caddy:LATEST", "moving tag 'LATEST'"),
    ],
)
def test_pinned_images_rejects_unpinned(ref, expect):
    v = run(cp.pinned_images, resource_args(REMOTE_IMAGE, image(ref), "img"))
    assert len(v) == 1, v.items
    assert expect in v.messages[0]
    assert ref in v.messages[0]
    assert "@sha256:<digest>" in v.messages[0]  # says how to fix


@pytest.mark.parametrize(
    "ref",
    [
        f"{BACKEND}:{SHA_TAG}",
        f"{DASHBOARD}:{SHA_TAG}",
        "postgres:17.2-alpine",
        f"postgres@{DIGEST}",
        f"postgres:latest@{DIGEST}",  # the digest pins it, the tag is informational
        "localhost:5000/convex-backend:1.2.3",
    ],
)
def test_pinned_images_accepts_pinned(ref):
    assert len(run(cp.pinned_images, resource_args(REMOTE_IMAGE, image(ref), "img"))) == 0


def test_pinned_images_ignores_other_types():
    args = resource_args(CONTAINER, container("c", "backend") | {"image": "latest"}, "c")
    assert len(run(cp.pinned_images, args)) == 0


def test_parse_image_ref():
    assert cp.parse_image_ref(f"{BACKEND}:{SHA_TAG}") == (BACKEND, SHA_TAG, None)
    assert cp.parse_image_ref(f"localhost:5000/a/b:1@{DIGEST}") == (
        "localhost:5000/a/b",
        "1",
        DIGEST,
    )
    assert cp.parse_image_ref("localhost:5000/a") == ("localhost:5000/a", None, None)


# ---------------------------------------------------------------------------
# 2. convex-versions-match
# ---------------------------------------------------------------------------


def images_stack(*refs):
    return StackValidationArgs(
        [stack_resource(REMOTE_IMAGE, image(r), f"img{i}") for i, r in enumerate(refs)]
    )


def test_convex_versions_mismatch_reported_on_each_image():
    other = "1111111111111111111111111111111111111111"
    v = run(cp.convex_versions_match, images_stack(f"{BACKEND}:{SHA_TAG}", f"{DASHBOARD}:{other}"))
    assert len(v) == 2
    assert sorted(v.urns) == sorted([urn(REMOTE_IMAGE, "img0"), urn(REMOTE_IMAGE, "img1")])
    for m in v.messages:
        assert SHA_TAG in m and other in m
        assert "same tag" in m


def test_convex_versions_match_passes_with_same_tag_and_ignores_other_images():
    v = run(
        cp.convex_versions_match,
        images_stack(f"{BACKEND}:{SHA_TAG}", f"{DASHBOARD}:{SHA_TAG}", "postgres:17", "caddy:2.8"),
    )
    assert len(v) == 0


def test_convex_versions_untagged_dashboard_counts_as_latest():
    v = run(cp.convex_versions_match, images_stack(f"{BACKEND}:{SHA_TAG}", DASHBOARD))
    assert len(v) == 2
    assert "'latest'" in " ".join(v.messages)


def test_convex_versions_digest_only_cannot_be_compared():
    v = run(cp.convex_versions_match, images_stack(f"{BACKEND}:{SHA_TAG}", f"{DASHBOARD}@{DIGEST}"))
    assert len(v) == 1
    assert v.urns == [urn(REMOTE_IMAGE, "img1")]
    assert "digest only" in v.messages[0]


def test_convex_versions_tag_plus_digest_uses_tag():
    v = run(
        cp.convex_versions_match,
        images_stack(f"{BACKEND}:{SHA_TAG}@{DIGEST}", f"{DASHBOARD}:{SHA_TAG}@sha256:{'cd' * 32}"),
    )
    assert len(v) == 0


# ---------------------------------------------------------------------------
# 3. no-admin-key-in-dashboard
# ---------------------------------------------------------------------------


def test_admin_key_in_dashboard_env_is_rejected():
    wire = container(
        "convex-dashboard",
        "dashboard",
        envs=[
            "NEXT_PUBLIC_DEPLOYMENT_URL=https://api.example.com",
            "NEXT_PUBLIC_ADMIN_KEY=convex|abc",
        ],
    )
    v = run(cp.no_admin_key_in_dashboard, resource_args(CONTAINER, wire, "dash"))
    assert v.messages == [
        "Container 'convex-dashboard' sets NEXT_PUBLIC_ADMIN_KEY. NEXT_PUBLIC_* variables are "
        "built into the dashboard's JavaScript and sent to every browser that opens it, so this "
        "publishes the Convex admin key. Remove NEXT_PUBLIC_ADMIN_KEY from envs and paste the "
        "admin key into the dashboard's login form instead."]
    # A value holding "=" (base64, URLs) still names the variable before the first "=".
    wire["envs"] = ["NEXT_PUBLIC_ADMIN_KEY=convex|a=b=c"]
    assert len(run(cp.no_admin_key_in_dashboard, resource_args(CONTAINER, wire, "dash"))) == 1


def test_admin_key_rejected_on_any_container():
    wire = container("convex-backend", "backend", envs=["NEXT_PUBLIC_ADMIN_KEY="])
    assert len(run(cp.no_admin_key_in_dashboard, resource_args(CONTAINER, wire, "be"))) == 1


def test_dashboard_without_admin_key_passes():
    wire = container(
        "convex-dashboard", "dashboard", envs=["NEXT_PUBLIC_DEPLOYMENT_URL=https://api.example.com"]
    )
    assert len(run(cp.no_admin_key_in_dashboard, resource_args(CONTAINER, wire, "dash"))) == 0
    # the backend's (secret) admin key variable is a different name and fine here
    be = container("convex-backend", "backend", envs=["CONVEX_SELF_HOSTED_ADMIN_KEY=x"])
    assert len(run(cp.no_admin_key_in_dashboard, resource_args(CONTAINER, be, "be"))) == 0


def test_admin_key_unknown_env_element_is_not_silently_passed():
    wire = container("convex-dashboard", "dashboard", envs=["A=1", UNKNOWN_STRING_VALUE])
    with pytest.raises(UnknownValueError):
        run(cp.no_admin_key_in_dashboard, resource_args(CONTAINER, wire, "dash"))
    # ...but a known violation is still reported even with unknown siblings
    wire = container(
        "convex-dashboard", "dashboard", envs=[UNKNOWN_STRING_VALUE, "NEXT_PUBLIC_ADMIN_KEY=k"]
    )
    assert len(run(cp.no_admin_key_in_dashboard, resource_args(CONTAINER, wire, "dash"))) == 1


# ---------------------------------------------------------------------------
# 4. protect-data-in-prod
# ---------------------------------------------------------------------------


def volumes_stack(stack, protect=False, config=None, roles=("data", "postgres-data", "tls-data")):
    resources = [
        stack_resource(VOLUME, volume(f"convex-{r}", r, stack), f"vol-{r}", protect=protect)
        for r in roles
    ]
    return StackValidationArgs(resources, config)


@pytest.mark.parametrize("stack", ["prod", "production", "prod-eu", "production-2"])
def test_unprotected_data_volumes_in_prod_are_rejected(stack):
    v = run(cp.protect_data_in_prod, volumes_stack(stack))
    assert sorted(v.urns) == sorted([urn(VOLUME, "vol-data"), urn(VOLUME, "vol-postgres-data")])
    for m in v.messages:
        assert stack in m and "protect=True" in m


def test_protected_data_volumes_in_prod_pass():
    assert len(run(cp.protect_data_in_prod, volumes_stack("prod", protect=True))) == 0


@pytest.mark.parametrize("stack", ["dev", "staging", "preprod", "prod2", "my-prod"])
def test_non_prod_stacks_need_no_protection(stack):
    assert len(run(cp.protect_data_in_prod, volumes_stack(stack))) == 0


def test_prod_pattern_comes_from_policy_config():
    cfg = {"prodStackPattern": "^live$"}
    assert len(run(cp.protect_data_in_prod, volumes_stack("live", config=cfg))) == 2
    assert len(run(cp.protect_data_in_prod, volumes_stack("prod", config=cfg))) == 0


def test_invalid_prod_pattern_is_reported():
    v = run(cp.protect_data_in_prod, volumes_stack("dev", config={"prodStackPattern": "(["}))
    assert len(v) == 1 and "prodStackPattern" in v.messages[0]


def test_missing_stack_label_falls_back_to_pulumi_stack(monkeypatch):
    wire = {"name": "convex-data", "labels": [{"label": "convex-selfhost.role", "value": "data"}]}
    args = StackValidationArgs([stack_resource(VOLUME, wire, "vol")])
    monkeypatch.setenv("PULUMI_STACK", "prod")
    assert len(run(cp.protect_data_in_prod, args)) == 1
    monkeypatch.setenv("PULUMI_STACK", "dev")
    assert len(run(cp.protect_data_in_prod, args)) == 0


def test_unlabelled_volume_gets_role_from_mounting_container():
    """An adopted data volume carries no labels; the backend container that mounts it does."""
    adopted = {"name": "legacy-convex-data"}  # no labels at all
    be = container("main-backend", "backend", stack="prod") | {
        "volumes": [{"volumeName": "legacy-convex-data", "containerPath": "/convex/data"}]
    }
    proxy = container("main-caddy", "tls-proxy", stack="prod") | {
        "volumes": [{"volumeName": "caddy-data", "containerPath": "/data"}]
    }
    unprotected = StackValidationArgs(
        [
            stack_resource(VOLUME, adopted, "vol"),
            stack_resource(VOLUME, {"name": "caddy-data"}, "caddy-vol"),
            stack_resource(CONTAINER, be, "be"),
            stack_resource(CONTAINER, proxy, "proxy"),
        ]
    )
    v = run(cp.protect_data_in_prod, unprotected)
    assert v.urns == [urn(VOLUME, "vol")]
    assert "legacy-convex-data" in v.messages[0]
    protected = StackValidationArgs(
        [stack_resource(VOLUME, adopted, "vol", protect=True), stack_resource(CONTAINER, be, "be")]
    )
    assert len(run(cp.protect_data_in_prod, protected)) == 0


def test_protect_config_schema_default():
    schema = cp.protect_data_in_prod.config_schema
    assert schema.properties["prodStackPattern"]["default"] == \
        r"^(prod|production|prd|live)(-.*)?$"


@pytest.mark.parametrize("stack", ["Prod", "PROD", "prd", "live", "Live-2", "PRODUCTION-eu",
                                   "prd-1", "LIVE"])
def test_production_stacks_in_any_letter_case_and_common_names_are_production(stack):
    assert len(run(cp.protect_data_in_prod, volumes_stack(stack))) == 2


@pytest.mark.parametrize("stack", ["preprod", "prod2", "my-prod", "delivery", "liver", "prdx",
                                   "staging-live"])
def test_names_that_only_contain_a_production_word_are_not_production(stack):
    assert len(run(cp.protect_data_in_prod, volumes_stack(stack))) == 0


def test_a_configured_prod_pattern_is_matched_in_any_letter_case():
    cfg = {"prodStackPattern": "^live$"}
    assert len(run(cp.protect_data_in_prod, volumes_stack("LIVE", config=cfg))) == 2


# ---------------------------------------------------------------------------
# 5. no-public-ports-without-tls
# ---------------------------------------------------------------------------


def port(ip=None, internal=3210, external=3210):
    p = {"internal": internal, "external": external, "protocol": "tcp"}
    if ip is not None:
        p["ip"] = ip
    return p


@pytest.mark.parametrize(
    "ip", [None, "", "0.0.0.0", "::", "8.8.8.8", "2001:4860:4860::8888", "example.com",
           # every spelling of "every interface", and shorthands that are no IP literal
           "::ffff:0.0.0.0", "[::ffff:0.0.0.0]", "::0", "0:0:0:0:0:0:0:0", "[::]", "0",
           "000.0.0.0", "0.0.0.00", "::ffff:8.8.8.8"]
)
def test_public_port_on_non_proxy_container_is_rejected(ip):
    res = stack_resource(
        CONTAINER, container("convex-backend", "backend", ports=[port(ip)]), "backend"
    )
    v = run(cp.no_public_ports_without_tls, StackValidationArgs([res]))
    assert v.urns == [urn(CONTAINER, "backend")]
    assert v.messages == [public_port_message(
        "convex-backend", "backend", "3210/tcp", ip or "0.0.0.0 (Docker default, no ip set)",
        3210)]


def public_port_message(name, role, port, address, host_port):
    return (f"Container '{name}' (role {role}) publishes port {port} on public address "
            f"{address}, host port {host_port}. Raw Convex ports must stay on loopback or "
            "private addresses; public traffic goes through the TLS proxy. Set bindAddress to "
            "127.0.0.1 and enable the TLS proxy.")


def test_public_ports_are_all_reported_even_after_unknown_values():
    unknown_ports = container("convex-a", "backend")
    unknown_ports["ports"] = UNKNOWN_STRING_VALUE
    bare = {"name": "plain", "image": "sha256:" + "0" * 64,
            "ports": [{"ip": UNKNOWN_STRING_VALUE, "internal": 1, "external": 1},
                      {"ip": "0.0.0.0"}, "not a port", {"ip": "8.8.8.8", "internal": 53,
                                                        "external": 53, "protocol": "udp"}]}
    resources = [
        stack_resource(CONTAINER, unknown_ports, "a"),
        stack_resource(VOLUME, volume("v", "data", "dev"), "v"),
        stack_resource(CONTAINER, bare, "b"),
    ]
    v = Violations()
    with pytest.raises(UnknownValueError):
        cp.no_public_ports_without_tls.validate(StackValidationArgs(resources), v)
    assert v.urns == [urn(CONTAINER, "b")] * 2
    assert v.messages == [
        public_port_message("plain", "unlabelled", "?/tcp", "0.0.0.0", "<random>"),
        public_port_message("plain", "unlabelled", "53/udp", "8.8.8.8", 53)]


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "127.0.0.53",
        "::1",
        "10.1.2.3",
        "172.16.0.10",
        "192.168.1.20",
        "fd00::1",
        "[::1]",
        "::ffff:127.0.0.1",
    ],
)
def test_loopback_and_private_ports_pass(ip):
    res = stack_resource(
        CONTAINER, container("convex-backend", "backend", ports=[port(ip)]), "backend"
    )
    assert len(run(cp.no_public_ports_without_tls, StackValidationArgs([res]))) == 0


def test_tls_proxy_may_publish_publicly_and_others_are_still_checked():
    resources = [
        stack_resource(
            CONTAINER, container("caddy", "tls-proxy", ports=[port("0.0.0.0", 443, 443)]), "proxy"
        ),
        stack_resource(
            CONTAINER,
            container("convex-dashboard", "dashboard", ports=[port(None, 6791, 6791)]),
            "dashboard",
        ),
        stack_resource(
            CONTAINER,
            container(
                "convex-backend",
                "backend",
                ports=[port("127.0.0.1"), port("127.0.0.1", 3211, 3211)],
            ),
            "backend",
        ),
        stack_resource(CONTAINER, container("postgres", "postgres"), "pg"),
    ]
    v = run(cp.no_public_ports_without_tls, StackValidationArgs(resources))
    assert v.urns == [urn(CONTAINER, "dashboard")]
    assert "6791" in v.messages[0]


def test_unlabelled_container_is_checked():
    wire = {"name": "mystery", "ports": [port("0.0.0.0")]}
    v = run(
        cp.no_public_ports_without_tls, StackValidationArgs([stack_resource(CONTAINER, wire, "m")])
    )
    assert len(v) == 1


def test_unknown_port_ip_reports_known_violations_then_raises():
    resources = [
        stack_resource(
            CONTAINER, container("a", "backend", ports=[port(UNKNOWN_STRING_VALUE)]), "a"
        ),
        stack_resource(CONTAINER, container("b", "dashboard", ports=[port("0.0.0.0")]), "b"),
    ]
    v = Violations()
    with pytest.raises(UnknownValueError):
        cp.no_public_ports_without_tls.validate(StackValidationArgs(resources), v)
    assert v.urns == [urn(CONTAINER, "b")]


# ---------------------------------------------------------------------------
# 6. secret-envs-are-secret
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(cp.SECRET_ENV_KEYS) + [
    "STRIPE_SECRET_KEY", "API_KEY", "GITHUB_TOKEN", "SMTP_PASSWORD", "SENTRY_DSN",
    "BASIC_AUTH", "GOOGLE_CREDENTIALS", "SSH_PRIVATE"])
def test_sensitive_env_without_secret_marker_is_rejected(key):
    wire = container("convex-backend", "backend", envs=["DO_NOT_TRACK=1", f"{key}=s3cr3t"])
    v = run(cp.secret_envs_are_secret, resource_args(CONTAINER, wire, "be"))
    assert len(v) == 1
    assert key in v.messages[0]
    assert 'additional_secret_outputs=["envs"]' in v.messages[0]


def test_sensitive_env_with_additional_secret_outputs_passes():
    wire = container(
        "convex-backend", "backend", envs=["INSTANCE_SECRET=abc", "POSTGRES_URL=postgres://u:p@db"]
    )
    args = resource_args(CONTAINER, wire, "be", opts=options(secret_outputs=["envs"]))
    assert len(run(cp.secret_envs_are_secret, args)) == 0


def test_other_secret_outputs_do_not_count():
    wire = container("convex-backend", "backend", envs=["INSTANCE_SECRET=abc"])
    args = resource_args(CONTAINER, wire, "be", opts=options(secret_outputs=["labels"]))
    assert len(run(cp.secret_envs_are_secret, args)) == 1


def test_container_without_sensitive_envs_passes():
    wire = container(
        "convex-dashboard", "dashboard", envs=["NEXT_PUBLIC_DEPLOYMENT_URL=http://127.0.0.1:3210"]
    )
    assert len(run(cp.secret_envs_are_secret, resource_args(CONTAINER, wire, "dash"))) == 0


def test_declared_secret_envs_are_not_read_even_if_unknown():
    wire = container("convex-backend", "backend") | {
        "envs": "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2"
    }  # unknown array
    args = resource_args(CONTAINER, wire, "be", opts=options(secret_outputs=["envs"]))
    assert len(run(cp.secret_envs_are_secret, args)) == 0
    with pytest.raises(UnknownValueError):
        run(cp.secret_envs_are_secret, resource_args(CONTAINER, wire, "be"))


def test_secret_marker_is_invisible_to_analyze_so_only_options_count():
    """Documents the limitation: the engine sends envs wrapped in the secret
    signature, but Analyze deserializes with proxy_secrets=False, which drops it;
    the policy therefore decides from additional_secret_outputs alone."""
    wire = container("convex-backend", "backend") | {"envs": secret(["INSTANCE_SECRET=abc"])}
    analyze_style = resource_args(CONTAINER, wire, "be")  # proxy_secrets=False, as in Analyze
    assert list(analyze_style.props["envs"]) == ["INSTANCE_SECRET=abc"]  # marker gone
    assert len(run(cp.secret_envs_are_secret, analyze_style)) == 1
    remediate_style = resource_args(CONTAINER, wire, "be", proxy_secrets=True)
    assert len(run(cp.secret_envs_are_secret, remediate_style)) == 1
    declared = resource_args(CONTAINER, wire, "be", opts=options(secret_outputs=["envs"]))
    assert len(run(cp.secret_envs_are_secret, declared)) == 0


# ---------------------------------------------------------------------------
# End to end: the pack started as the CLI starts it, asked over gRPC
# ---------------------------------------------------------------------------


@pytest.fixture
def analyzer():
    """The pack's analyzer, served by the pack's own process on a loopback port.

    Started as the CLI's pulumi-analyzer-policy-python starts a Python pack:
    `python -u -m pulumi.policy ENGINE PACK_DIR` in the pack's directory."""
    # The served pack runs the code as it is: a mutation-testing run's marker stays here
    # (scripts/mutation.sh; mutants are tested through the in-process tests above).
    env = {k: v for k, v in os.environ.items() if k != "MUTANT_UNDER_TEST"}
    pack = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1",
                             str(POLICY_DIR)], cwd=POLICY_DIR, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = pack.stdout.readline().strip()
        assert port.isdigit(), f"the pack printed no port: {pack.stderr.read()[-2000:]}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        pack.kill()
        pack.communicate(timeout=30)


def struct(d):
    s = struct_pb2.Struct()
    json_format.ParseDict(d, s)
    return s


def rpc_opts(protect=False, secret_outputs=()):
    return proto.AnalyzerResourceOptions(
        protect=protect, additionalSecretOutputs=list(secret_outputs)
    )


def test_served_pack_describes_itself(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "convex-selfhost"
    assert {p.name for p in info.policies} == EXPECTED_POLICY_NAMES
    assert {p.enforcementLevel for p in info.policies} == {proto.MANDATORY}


def test_served_pack_secret_wrapped_envs_still_need_additional_secret_outputs(analyzer):
    wire = container("convex-backend", "backend", envs=[]) | {
        "envs": secret(["INSTANCE_SECRET=abc"])
    }
    req = proto.AnalyzeRequest(
        type=CONTAINER,
        urn=urn(CONTAINER, "be"),
        name="be",
        properties=struct(wire),
        options=rpc_opts(),
    )
    diags = analyzer.Analyze(req).diagnostics
    assert [d.policyName for d in diags] == ["secret-envs-are-secret"]
    assert diags[0].enforcementLevel == proto.MANDATORY

    req.options.CopyFrom(rpc_opts(secret_outputs=["envs"]))
    assert list(analyzer.Analyze(req).diagnostics) == []


def test_served_pack_unknown_becomes_advisory(analyzer):
    wire = container("convex-dashboard", "dashboard") | {"envs": [UNKNOWN_STRING_VALUE]}
    req = proto.AnalyzeRequest(
        type=CONTAINER,
        urn=urn(CONTAINER, "d"),
        name="d",
        properties=struct(wire),
        options=rpc_opts(),
    )
    diags = analyzer.Analyze(req).diagnostics
    assert diags and all(d.enforcementLevel == proto.ADVISORY for d in diags)
    assert all("during preview" in d.message for d in diags)


def test_served_pack_analyze_stack_with_policy_config(analyzer):
    cfg = proto.PolicyConfig(
        enforcementLevel=proto.MANDATORY, properties=struct({"prodStackPattern": "^live$"})
    )
    analyzer.Configure(proto.ConfigureAnalyzerRequest(
        policyConfig={"protect-data-in-prod": cfg}))
    resources = [
        proto.AnalyzerResource(
            type=VOLUME,
            urn=urn(VOLUME, "data"),
            name="data",
            properties=struct(volume("convex-data", "data", "live")),
            options=rpc_opts(),
        ),
        proto.AnalyzerResource(
            type=VOLUME,
            urn=urn(VOLUME, "pg"),
            name="pg",
            properties=struct(volume("convex-pg", "postgres-data", "live")),
            options=rpc_opts(protect=True),
        ),
        proto.AnalyzerResource(
            type=CONTAINER,
            urn=urn(CONTAINER, "be"),
            name="be",
            properties=struct(container("convex-backend", "backend", ports=[port("127.0.0.1")])),
            options=rpc_opts(),
        ),
    ]
    diags = analyzer.AnalyzeStack(proto.AnalyzeStackRequest(resources=resources)).diagnostics
    assert [(d.policyName, d.urn) for d in diags] == [("protect-data-in-prod", urn(VOLUME, "data"))]


# ---------------------------------------------------------------------------
# Pack wiring
# ---------------------------------------------------------------------------


def test_all_policies_lists_every_policy_in_module():
    from policy import kubernetes_policies

    module_policies = {id(obj): obj for module in (cp, kubernetes_policies)
                       for obj in vars(module).values() if isinstance(obj, Policy)}
    listed = {id(p) for p in cp.ALL_POLICIES}
    assert set(module_policies) == listed
    names = [p.name for p in cp.ALL_POLICIES]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED_POLICY_NAMES
    for p in cp.ALL_POLICIES:
        assert p.description


def test_main_builds_pack_from_all_policies(monkeypatch):
    """Run policy/__main__.py with a recording PolicyPack: it must ship every policy."""
    import runpy

    import pulumi_policy

    recorded = []
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kw: recorded.append(kw))
    runpy.run_path(str(POLICY_DIR / "__main__.py"), run_name="__main__")
    (pack,) = recorded
    assert pack["name"] == "convex-selfhost"
    assert pack["enforcement_level"] == EnforcementLevel.MANDATORY
    assert {p.name for p in pack["policies"]} == EXPECTED_POLICY_NAMES
    assert len(pack["policies"]) == len(EXPECTED_POLICY_NAMES)


def test_policies_module_never_starts_a_pack():
    tree = ast.parse((POLICY_DIR / "convex_policies.py").read_text())
    assert not any(
        isinstance(n, ast.Call)
        and getattr(n.func, "id", getattr(n.func, "attr", None)) == "PolicyPack"
        for n in ast.walk(tree)
    )


def test_pack_metadata_files():
    yaml_text = (POLICY_DIR / "PulumiPolicy.yaml").read_text()
    assert (
        "name: python" in yaml_text
        and "virtualenv: venv" in yaml_text
        and "description:" in yaml_text
    )
    reqs = (POLICY_DIR / "requirements.txt").read_text()
    assert "pulumi-policy" in reqs and "pulumi>=" in reqs


def test_versions_are_compared_across_every_convex_image_after_unknown_and_other_resources():
    other = "1111111111111111111111111111111111111111"
    unknown = image("x")
    unknown["name"] = UNKNOWN_STRING_VALUE
    resources = [
        stack_resource(VOLUME, volume("v", "data", "dev"), "v"),
        stack_resource(REMOTE_IMAGE, unknown, "unknown"),
        stack_resource(REMOTE_IMAGE, {"name": 42}, "odd"),
        stack_resource(REMOTE_IMAGE, image("postgres:17.6-alpine"), "pg"),
        stack_resource(REMOTE_IMAGE, image(f"{BACKEND}@{DIGEST}"), "by-digest"),
        stack_resource(REMOTE_IMAGE, image(f"{BACKEND}:{SHA_TAG}"), "be"),
        stack_resource(REMOTE_IMAGE, image(f"{DASHBOARD}:{other}"), "dash"),
    ]
    v = Violations()
    with pytest.raises(UnknownValueError):
        cp.convex_versions_match.validate(StackValidationArgs(resources), v)
    summary = f"backend '{BACKEND}:{SHA_TAG}', dashboard '{DASHBOARD}:{other}'"
    assert v.urns == [urn(REMOTE_IMAGE, n) for n in ("by-digest", "be", "dash")]
    assert v.messages == [
        f"Convex backend image '{BACKEND}@{DIGEST}' is pinned by digest only, so its version "
        "cannot be compared with the other Convex image. Use "
        "'<repository>:<version>@sha256:<digest>' (the same <version> for backend and "
        "dashboard).",
        *(f"Convex {component} image '{name}' uses tag '{tag}', but the Convex images in this "
          f"stack use different tags ({', '.join(sorted([SHA_TAG, other]))}): {summary}. The "
          "backend and dashboard must run the same version: set both images to the same tag."
          for component, name, tag in (("backend", f"{BACKEND}:{SHA_TAG}", SHA_TAG),
                                       ("dashboard", f"{DASHBOARD}:{other}", other)))]


# ---------------------------------------------------------------------------
# Word for word, and odd or unknown props (found by mutation testing)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("wire", [{}, {"name": ""}, {"name": "  "}, {"name": 5}])
def test_an_image_without_a_name_is_reported_by_resource_name(wire):
    v = run(cp.pinned_images, resource_args(REMOTE_IMAGE, wire, "backend-image"))
    assert v.messages == [
        "RemoteImage 'backend-image' has no image name, so its version cannot be checked. "
        "Set name to '<repository>:<version-tag>' or '<repository>@sha256:<digest>'."]


def test_an_unpinned_image_message_names_its_repository():
    v = run(cp.pinned_images, resource_args(REMOTE_IMAGE, image(f"{BACKEND}:latest")))
    assert v.messages == [
        f"Image '{BACKEND}:latest' uses the moving tag 'latest': two deployments of the same "
        f"code could run different versions. Pin an explicit version tag or a digest: "
        f"'{BACKEND}:<version>' or '{BACKEND}@sha256:<digest>'."]


def test_container_messages_fall_back_to_the_resource_name():
    nameless = {"envs": ["NEXT_PUBLIC_ADMIN_KEY=k", "POSTGRES_URL=x", "INSTANCE_SECRET=y"]}
    v = run(cp.no_admin_key_in_dashboard, resource_args(CONTAINER, nameless, "dash"))
    assert v.messages[0].startswith("Container 'dash' sets NEXT_PUBLIC_ADMIN_KEY.")
    v = run(cp.secret_envs_are_secret, resource_args(CONTAINER, nameless, "be"))
    assert v.messages == [
        "Container 'be' passes INSTANCE_SECRET, NEXT_PUBLIC_ADMIN_KEY, POSTGRES_URL in envs, "
        "but envs is not declared "
        'secret. Add pulumi.ResourceOptions(additional_secret_outputs=["envs"]) to the '
        "container (and keep building the values with pulumi.Output.secret) so the "
        "environment is encrypted in the state file and masked in previews. (Policies cannot "
        "see Output.secret markers on inputs, so additional_secret_outputs is what this policy "
        "checks.)"]
    ports = {"ports": [port("0.0.0.0")]}
    v = run(cp.no_public_ports_without_tls,
            StackValidationArgs([stack_resource(CONTAINER, ports, "raw")]))
    assert v.messages == [public_port_message("raw", "unlabelled", "3210/tcp", "0.0.0.0", 3210)]


def test_invalid_prod_pattern_message_word_for_word():
    v = run(cp.protect_data_in_prod, volumes_stack("dev", config={"prodStackPattern": "(["}))
    assert v.messages == [
        "Policy config prodStackPattern='([' is not a valid regular expression (unterminated "
        "character set at position 1); cannot decide which stacks are production. Fix the "
        "pattern in the policy pack config."]


def test_unprotected_volume_message_word_for_word_and_by_resource_name():
    nameless = {"labels": labels(stack="prod", role="data")}
    v = run(cp.protect_data_in_prod, StackValidationArgs([
        stack_resource(VOLUME, volume("convex-tls", "tls-data", "prod"), "tls"),  # not data
        stack_resource(VOLUME, nameless, "vol-data")]))
    assert v.urns == [urn(VOLUME, "vol-data")]
    assert v.messages == [
        "Volume 'vol-data' (role data) in production stack 'prod' is not protected (stacks "
        "matching prodStackPattern '^(prod|production|prd|live)(-.*)?$' are production). It "
        "holds Convex "
        "data, so a destroy or replacement would delete it. Create it with "
        "pulumi.ResourceOptions(protect=True)."]


def test_an_empty_stack_label_falls_back_to_pulumi_stack(monkeypatch):
    wire = {"name": "convex-data", "labels": labels(stack="", role="data")}
    monkeypatch.setenv("PULUMI_STACK", "prod")
    v = run(cp.protect_data_in_prod, StackValidationArgs([stack_resource(VOLUME, wire, "vol")]))
    assert v.urns == [urn(VOLUME, "vol")]


def test_unknown_volume_or_container_props_report_the_rest_then_raise():
    unknown_volume = {"name": "x", "labels": UNKNOWN_STRING_VALUE}
    unknown_container = container("odd", "backend", stack="prod") | {
        "labels": UNKNOWN_STRING_VALUE}
    dashboard = container("dash", "dashboard", stack="prod") | {
        "volumes": [{"volumeName": "legacy-data"}]}
    backend = container("be", "backend", stack="prod") | {
        "volumes": ["odd mount", {"volumeName": 5}, {"volumeName": "legacy-data"}]}
    for odd in (stack_resource(VOLUME, unknown_volume, "odd"),
                stack_resource(CONTAINER, unknown_container, "odd")):
        resources = [odd, stack_resource(CONTAINER, dashboard, "dash"),
                     stack_resource(CONTAINER, backend, "be"),
                     stack_resource(VOLUME, {"name": "legacy-data"}, "legacy")]
        v = Violations()
        with pytest.raises(UnknownValueError):
            cp.protect_data_in_prod.validate(StackValidationArgs(resources), v)
        assert v.urns == [urn(VOLUME, "legacy")]
        assert "Volume 'legacy-data' (role data) in production stack 'prod'" in v.messages[0]


def test_ports_after_an_unknown_container_and_an_odd_entry_are_still_checked():
    unknown = container("a", "backend") | {"labels": UNKNOWN_STRING_VALUE}
    later = container("b", "backend") | {"ports": ["odd", port("0.0.0.0")]}
    v = Violations()
    with pytest.raises(UnknownValueError):
        cp.no_public_ports_without_tls.validate(StackValidationArgs([
            stack_resource(CONTAINER, unknown, "a"), stack_resource(CONTAINER, later, "b")]), v)
    assert v.messages == [public_port_message("b", "backend", "3210/tcp", "0.0.0.0", 3210)]


def test_secret_env_message_names_the_container():
    wire = container("convex-backend", "backend", envs=["INSTANCE_SECRET=x"])
    v = run(cp.secret_envs_are_secret, resource_args(CONTAINER, wire, "be"))
    assert v.messages[0].startswith("Container 'convex-backend' passes INSTANCE_SECRET in envs,")


def test_every_volume_and_port_is_checked_after_ones_that_pass():
    v = run(cp.protect_data_in_prod, StackValidationArgs([
        stack_resource(VOLUME, volume("dev-data", "data", "dev"), "dev-vol"),
        stack_resource(VOLUME, volume("prod-data", "data", "prod"), "prod-vol")]))
    assert v.urns == [urn(VOLUME, "prod-vol")]
    wire = container("convex-backend", "backend", ports=[port("127.0.0.1"), port("0.0.0.0")])
    v = run(cp.no_public_ports_without_tls,
            StackValidationArgs([stack_resource(CONTAINER, wire, "backend")]))
    assert v.messages == [public_port_message("convex-backend", "backend", "3210/tcp", "0.0.0.0",
                                              3210)]
