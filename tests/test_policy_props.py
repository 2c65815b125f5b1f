"""The policy pack's property helpers (policy/resource_props.py) on odd and unknown props.

Props reach the policies through pulumi-policy's proxies, which raise UnknownValueError
for values unknown in preview; `analyze_props` wraps them exactly as the analyzer does.
"""

from __future__ import annotations

import pytest
from pulumi_policy import Secret
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError
from test_policy import analyze_props, secret

from policy.resource_props import (
    _convex_component,
    _display_name,
    _env_entries,
    _get,
    _is_public_address,
    _known_items,
    _labels,
    _stack_of,
)


def proxied_list(items, proxy_secrets=False):
    return analyze_props({"items": items}, proxy_secrets)["items"]


@pytest.mark.parametrize("repository,component", [
    ("ghcr.io/get-convex/convex-backend", "backend"),
    ("GHCR.IO/get-convex/convex-dashboard", "dashboard"),
    ("get-convex/convex-backend", "backend"),  # docker.io naming
    ("mirror.example.com/cache/get-convex/convex-dashboard", "dashboard"),
    ("example.com/convex-backend", None),  # another project's image of that name
    ("example.com/not-get-convex/convex-backend", None),
    ("postgres", None),
])
def test_convex_images_are_known_by_repository_path_under_any_registry(repository, component):
    assert _convex_component(repository) == component


def test_get_reads_mappings_only_and_treats_null_as_missing():
    assert _get(["name"], "name", "fallback") == "fallback"
    assert _get(None, "name", 3) == 3
    assert _get({"name": None}, "name", []) == []
    assert _get({}, "name", 5) == 5
    assert _get({"name": "x"}, "name", 5) == "x"
    with pytest.raises(UnknownValueError):
        _get(analyze_props({"name": UNKNOWN_STRING_VALUE}), "name")


def test_known_items_skip_unknown_elements_and_non_lists():
    assert list(_known_items(proxied_list([UNKNOWN_STRING_VALUE, "a", UNKNOWN_STRING_VALUE,
                                           "b"]))) == ["a", "b"]
    for odd in ("ab", b"ab", None, 7, {"a": 1}):
        assert list(_known_items(odd)) == []


def test_labels_skip_unknown_and_odd_entries():
    props = analyze_props({"labels": [
        {"label": UNKNOWN_STRING_VALUE, "value": "x"},
        "not-a-mapping",
        {"label": 5, "value": "y"},
        {"label": "a", "value": "b"},
        {"label": "c"},
    ]})
    assert _labels(props) == {"a": "b", "c": None}
    assert _labels({}) == {} and _labels({"labels": "a=b"}) == {}


def test_env_entries_name_before_the_first_equals_and_keep_the_first_unknown():
    envs = proxied_list([7, "A=b=c", UNKNOWN_STRING_VALUE, " B =1", "NOEQUALS",
                          UNKNOWN_STRING_VALUE])
    entries, unknown = _env_entries(envs)
    assert entries == [("A", "b=c"), ("B", "1"), ("NOEQUALS", "")]
    assert isinstance(unknown, UnknownValueError)
    assert _env_entries("A=1") == ([], None) and _env_entries(None) == ([], None)
    assert _env_entries({"A": "1"}) == ([], None)


def test_env_entries_read_through_secret_markers():
    # the proxy unwraps secrets; unproxied props (as remediations see them) hold Secret
    envs = proxied_list([secret("INSTANCE_SECRET=abc"), secret(5)], proxy_secrets=True)
    assert _env_entries(envs) == ([("INSTANCE_SECRET", "abc")], None)
    assert _env_entries([Secret("INSTANCE_SECRET=abc"), Secret(5), "A=1"]) == (
        [("INSTANCE_SECRET", "abc"), ("A", "1")], None)


def test_display_name_falls_back_for_missing_empty_odd_or_unknown_names():
    assert _display_name({"name": "convex-backend"}, "res") == "convex-backend"
    for props in ({}, {"name": ""}, {"name": 5}, analyze_props({"name": UNKNOWN_STRING_VALUE}),
                  None):
        assert _display_name(props, "res") == "res"


@pytest.mark.parametrize("ip,public", [
    (None, True), ("", True), ("  ", True), ("0.0.0.0", True), ("::", True), ("[::]", True),
    ("8.8.8.8", True), ("2001:4860::1", True), ("host.example.com", True),
    ("127.0.0.1", False), ("[::1]", False), (" ::1 ", False), ("10.0.0.5", False),
    ("192.168.1.2", False), ("::ffff:127.0.0.1", False), ("::ffff:8.8.8.8", True),
    ("fe80::1%eth0", False), ("fe80::1%a%b", False),
    ("1::1]", True), ("[::1", True),  # half-bracketed: not an address, so not provably private
])
def test_public_addresses(ip, public):
    assert _is_public_address(ip) is public


def test_the_stack_comes_from_the_urn_else_from_pulumi_stack(monkeypatch):
    monkeypatch.setenv("PULUMI_STACK", "from-env")
    assert _stack_of("urn:pulumi:Prod-eu::convex-selfhost::docker:index/remoteImage:"
                     "RemoteImage::img") == "Prod-eu"
    for urn in ("", "urn:pulumi:", "urn:pulumi:::p::t::n", "not-a-urn", None):
        assert _stack_of(urn) == "from-env", urn
    monkeypatch.delenv("PULUMI_STACK")
    assert _stack_of("nonsense") is None
