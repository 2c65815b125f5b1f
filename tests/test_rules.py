"""Rules shared by the settings and the policy pack give one verdict on the same input."""

import pytest
from test_policy import REMOTE_IMAGE, image, resource_args, run
from test_settings import load, problems

from components import rules
from components.settings import ConfigError
from policy import convex_policies as policies

DIGEST = "sha256:" + "ab" * 32
IMAGES = [
    "postgres:17.6-alpine", "postgres", "postgres:latest", "postgres:Latest", "postgres:LATEST",
    "postgres:dev", "postgres:main", f"postgres@{DIGEST}", "postgres@sha256:abc",
    f"postgres:latest@{DIGEST}", "localhost:5000/pg:16", "localhost:5000/pg",
    "registry.example.com/team/pg:16.1", "Postgres:16", "postgres:16 ", "postgres:-x",
]


@pytest.mark.parametrize("ref", IMAGES)
def test_settings_and_policy_pack_agree_on_pinning(ref):
    settings_refuses = bool(problems("dev", {"provisionPostgres": True, "postgresImage": ref})) \
        if rules.image_ref_problem(ref.strip()) else False
    if not settings_refuses:
        load("dev", {"provisionPostgres": True, "postgresImage": ref})
    pack_refuses = bool(run(policies.pinned_images,
                            resource_args(REMOTE_IMAGE, image(ref.strip()), "img")).items)
    assert settings_refuses == pack_refuses == (rules.image_ref_problem(ref.strip()) is not None)


@pytest.mark.parametrize("ref,pinned", [
    ("postgres:17.6-alpine", True), ("postgres", False), ("postgres:Latest", False),
    ("caddy:dev", False), (f"caddy@{DIGEST}", True), ("caddy@sha256:ABC", False),
    ("localhost:5000/pg", False), ("localhost:5000/pg:1", True), ("UPPER/case:1", False),
])
def test_image_ref_problem(ref, pinned):
    assert (rules.image_ref_problem(ref) is None) is pinned


def test_instance_names():
    assert rules.is_valid_instance_name("convex-prod")
    assert rules.is_valid_instance_name("a" * 63)
    for bad in ("a" * 64, "Convex", "convex--prod", "-convex", "convex-", "", "convex_prod"):
        assert not rules.is_valid_instance_name(bad), bad


@pytest.mark.parametrize("ref,problem", [
    ("", "is not an image reference"),
    ("post gres:16", "is not an image reference"),
    ("postgres:16 ", "is not an image reference"),
    ("a" * 511 + ":1", "is not an image reference"),
    ("Postgres:16", "is not an image reference (lowercase repository path, optional registry)"),
    ("postgres@sha256:abc", "has a digest that is not sha256: followed by 64 lowercase hex digits"),
    ("postgres", "has no tag, so Docker resolves it to the moving tag latest"),
    ("postgres:-x", "has a tag Docker does not accept"),
    ("postgres:Latest", "uses the moving tag 'Latest'"),
    ("postgres@sha256:" + "ab" * 32 + "@sha256:" + "cd" * 32,
     "has a digest that is not sha256: followed by 64 lowercase hex digits"),
])
def test_image_ref_problem_messages(ref, problem):
    assert rules.image_ref_problem(ref) == problem


def test_a_ref_of_512_characters_is_still_a_reference():
    ref = "a" * 508 + ":1.0"
    assert len(ref) == 512 and rules.image_ref_problem(ref) is None


def test_dev_stacks():
    for stack in ("dev", "local", "dev-x", "dev-feature-1"):
        assert rules.is_dev_stack(stack), stack
    for stack in ("develop", "prod", "staging", "xdev-1", "Dev", "localdev", "dev_x"):
        assert not rules.is_dev_stack(stack), stack


@pytest.mark.parametrize("ref,problem", [
    ("localhost/a:b/c", "is not an image reference (lowercase repository path, optional registry)"),
    ("localhost:5000/team/pg", "has no tag, so Docker resolves it to the moving tag latest"),
    ("localhost:5000/team/pg:16.4", None),
])
def test_a_colon_before_the_last_slash_is_never_a_tag(ref, problem):
    assert rules.image_ref_problem(ref) == problem


SHA = "652b828b5129e6cdbcaa3c20efa8d116d09ff3bf"
BACKEND = "ghcr.io/get-convex/convex-backend"
# One table for the settings and the policy pack: (image, pinned on a dev stack, pinned on
# any other stack). Outside dev a third-party tag must carry the full version of its
# upstream (major.minor.patch; major.minor for postgres, whose releases have two parts),
# and a Convex tag must be a release's commit SHA; a digest always pins.
PINNING = [
    ("postgres:17.6-alpine", True, True), ("postgres:17.6", True, True),
    ("postgres:17.6.1", True, True), ("postgres:17", True, False),
    ("postgres:17-alpine", True, False), ("postgres:alpine", True, False),
    ("caddy:2.10.2-alpine", True, True), ("caddy:v2.10.2", True, True),
    ("caddy:2.10", True, False), ("caddy:2", True, False), ("caddy:2-alpine", True, False),
    ("python:3.12.7-slim-bookworm", True, True), ("python:3.12-slim", True, False),
    ("python:3", True, False), ("registry.example.com/mirror/postgres:17.6", True, True),
    ("localhost:5000/pg:16.1", True, False), ("localhost:5000/pg:16.1.2", True, True),
    (f"postgres@{DIGEST}", True, True), (f"postgres:17@{DIGEST}", True, True),
    (f"caddy:2@{DIGEST}", True, True), (f"{BACKEND}:canary", True, False),
    (f"{BACKEND}:latest-arm64", True, False), (f"{BACKEND}:{SHA}", True, True),
    ("ghcr.io/get-convex/convex-dashboard:652b828", True, True),
    (f"{BACKEND}@{DIGEST}", True, True), (f"{BACKEND}:1.2.3", True, False),
    ("mirror.example.com/get-convex/convex-backend:2.10.2", True, False),
    ("postgres:latest", False, False), ("caddy", False, False), ("caddy:Stable", False, False),
]


def settings_pin(ref, stack):
    try:
        load(stack, {"provisionPostgres": True, "postgresImage": ref})
    except ConfigError as error:
        assert all(p.startswith("convex-selfhost:postgresImage: ") for p in error.problems)
        return False
    return True


def pack_pin(ref, stack):
    args = resource_args(REMOTE_IMAGE, image(ref), "img", stack=stack)
    return not run(policies.pinned_images, args).items


@pytest.mark.parametrize("ref,on_dev,elsewhere", PINNING)
def test_settings_and_policy_pack_give_one_verdict_on_floating_tags(ref, on_dev, elsewhere):
    assert settings_pin(ref, "dev") == pack_pin(ref, "dev") == on_dev
    for stack in ("staging", "prod", "preview"):
        assert settings_pin(ref, stack) == pack_pin(ref, stack) == elsewhere, stack
    assert (rules.image_ref_problem(ref, strict=True) is None) == elsewhere


@pytest.mark.parametrize("tag,elsewhere", [
    ("canary", False), ("latest-arm64", False), ("1.2.3", False), ("ABCDEF0", False),
    (SHA, True), ("652b828", True), ("0123456789abcdef0123456789abcdef01234567", True)])
def test_the_version_key_follows_the_same_rule_as_a_convex_image(tag, elsewhere):
    load("dev", {"version": tag})  # dev stacks may run any tag (with a warning)
    try:
        load("staging", {"version": tag})
        settings_verdict = True
    except ConfigError:
        settings_verdict = False
    assert settings_verdict == pack_pin(f"{BACKEND}:{tag}", "staging") == elsewhere


def test_floating_tag_messages():
    assert rules.tag_problem("postgres", "17", True) == (
        "uses the floating tag '17', which moves to each new upstream release; outside dev "
        "stacks the tag must start with the full major.minor version")
    assert rules.tag_problem("caddy", "2", True) == (
        "uses the floating tag '2', which moves to each new upstream release; outside dev "
        "stacks the tag must start with the full major.minor.patch version")
    assert rules.tag_problem(BACKEND, "canary", True) == (
        "uses the tag 'canary', which is not a release: Convex images are tagged with the "
        "commit SHA of each release, and only those stay put")
    assert rules.tag_problem("caddy", "2", False) is None
    assert problems("prod", {"caddyImage": "caddy:2"}) == (
        "convex-selfhost:caddyImage: 'caddy:2' uses the floating tag '2', which moves to each "
        "new upstream release; outside dev stacks the tag must start with the full "
        "major.minor.patch version; name an exact, pinned version, e.g. caddy:2.10.2-alpine.",)
    assert problems("staging", {"version": "canary"}) == (
        "convex-selfhost:version: 'canary' is not a release: upstream tags the Convex images "
        "with the commit SHA of each release, and only those stay put; pin one (such as "
        f"{SHA}). Only dev stacks may use other tags.",)
    message = run(policies.pinned_images,
                  resource_args(REMOTE_IMAGE, image("postgres:17"), "img", stack="prod")).messages
    assert message == [
        "Image 'postgres:17' uses the floating tag '17', which moves to each new upstream "
        "release; outside dev stacks the tag must start with the full major.minor version: two "
        "deployments of the same code could run different versions. Pin an explicit version "
        "tag or a digest: 'postgres:<version>' or 'postgres@sha256:<digest>'."]


@pytest.mark.parametrize("stack", ["prod", "production", "prd", "live", "Prod", "LIVE-eu",
                                   "prod-2", "Production-x"])
def test_production_stacks(stack):
    assert rules.is_production_stack(stack)


@pytest.mark.parametrize("stack", ["dev", "staging", "preprod", "prod2", "my-prod", "liver",
                                   "delivery", "prdx", ""])
def test_not_production_stacks(stack):
    assert not rules.is_production_stack(stack)


@pytest.mark.parametrize("text,address", [
    ("0.0.0.0", "0.0.0.0"), ("::ffff:0.0.0.0", "0.0.0.0"), ("::", "::"), ("::0", "::"),
    ("0:0:0:0:0:0:0:0", "::"), ("::ffff:127.0.0.1", "127.0.0.1"), ("::1", "::1"),
    ("0", None), ("000.0.0.0", None), ("0.0.0.00", None), ("localhost", None), ("", None)])
def test_bind_addresses(text, address):
    parsed = rules.bind_address(text)
    assert (None if parsed is None else str(parsed)) == address


@pytest.mark.parametrize("name,secret", [
    ("STRIPE_SECRET_KEY", True), ("API_KEY", True), ("OPENAI_APIKEY", True),
    ("GITHUB_TOKEN", True), ("AUTHTOKEN", True), ("SMTP_PASSWORD", True), ("DB_PASSWD", True),
    ("GOOGLE_CREDENTIALS", True), ("SSH_PRIVATE_KEY", True), ("SENTRY_DSN", True),
    ("BASIC_AUTH", True), ("KEY", True), ("secret_value", True), ("DB_PWD", True),
    ("MONKEY_PATCH", False), ("AUTHOR_NAME", False), ("KEYBOARD", False),
    ("MODULE_CACHE_MAX_SIZE_BYTES", False), ("RUST_LOG", False), ("DSNX", False)])
def test_secret_looking_env_names(name, secret):
    assert rules.looks_secret_env_name(name) is secret
