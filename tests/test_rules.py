"""Rules shared by the settings and the policy pack give one verdict on the same input."""

import pytest
from test_policy import REMOTE_IMAGE, image, resource_args, run
from test_settings import load, problems

from components import rules
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
