"""The policy pack against what the program really declares, stack by stack."""

import pytest
from harness import STACKS, evaluate
from pulumi_policy import (
    PolicyResource,
    ResourceValidationArgs,
    StackValidationArgs,
    StackValidationPolicy,
)
from test_policy import Violations, analyze_props, cp, options


def violations(run):
    found = Violations()
    resources = [r for r in run.resources if r.custom]
    for policy in cp.ALL_POLICIES:
        if isinstance(policy, StackValidationPolicy):
            stack_resources = [
                PolicyResource(r.type, analyze_props(r.raw), r.urn, r.name,
                               options(r.protect, r.additional_secret_outputs), None, None, [], {})
                for r in resources]
            policy.validate(StackValidationArgs(stack_resources, None), found)
        else:
            for r in resources:
                args = ResourceValidationArgs(r.type, analyze_props(r.raw), r.urn, r.name,
                                              options(r.protect, r.additional_secret_outputs),
                                              None, None)
                policy.validate(args, found)
    return found.messages


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_passes_the_policy_pack(stack):
    assert violations(evaluate(stack)) == []


def test_public_raw_ports_are_caught():
    found = violations(evaluate("staging", {"bindAddress": "0.0.0.0",
                                            "publicHost": "staging.example.com"}))
    assert found and all("0.0.0.0" in message for message in found)


def test_unprotected_prod_data_is_caught():
    found = violations(evaluate("prod", {"protectData": False}))
    assert any("convex-prod-data" in message for message in found)
    assert any("convex-prod-pgdata" in message for message in found)


def test_moving_version_on_dev_is_caught_by_the_pack():
    found = violations(evaluate("dev", {"version": "latest"}))
    assert any("latest" in message for message in found)
