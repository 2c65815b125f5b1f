"""components/settings/host.py: the host target's settings, and what it refuses up front."""

import hashlib

import pytest
from test_settings import load, problems

PRIVATE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n"
               "-----END OPENSSH PRIVATE KEY-----\n")
HOST_KEY = "ssh-ed25519 " + "A" * 68


@pytest.fixture
def binary(tmp_path):
    path = tmp_path / "convex-local-backend"
    path.write_bytes(b"#!/bin/sh\necho stand-in\n")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def host_config(binary, **extra):
    path, sha = binary
    return {"target": "host", "hostAddress": "convex.example.com", "sshHostKey": HOST_KEY,
            "backendBinary": str(path), "backendBinarySha256": sha, "dashboard": False,
            **extra}


def test_a_complete_host_target_is_read(binary):
    settings = load("staging", host_config(binary, sshPort=2222, sshUser="deploy"),
                    {"sshPrivateKey": PRIVATE_KEY})
    host = settings.host
    assert settings.target == "host"
    assert (host.address, host.port, host.user, host.host_key) == (
        "convex.example.com", 2222, "deploy", HOST_KEY)
    assert host.private_key.reveal() == PRIVATE_KEY
    assert (host.binary_path, host.binary_url, host.binary_sha256) == (
        str(binary[0]), "", binary[1])
    # A host-key line as ssh-keyscan prints it, with the host name, is taken too.
    assert load("staging", host_config(binary, sshHostKey=f"{HOST_KEY} comment"),
                {"sshPrivateKey": PRIVATE_KEY}).host.host_key == HOST_KEY


def test_the_docker_target_has_no_host_settings():
    settings = load("dev")
    assert settings.target == "docker" and settings.host is None


def test_everything_missing_is_reported_at_once():
    found = problems("staging", {"target": "host"})
    keys = [p.split(":")[1] for p in found]
    assert keys == ["hostAddress", "sshHostKey", "backendBinary", "backendBinarySha256",
                    "dashboard"]
    assert "ssh-keyscan" in found[1] and "checked out of band" in found[1]


def test_a_binary_that_does_not_match_its_sha256_is_refused(binary):
    path, _ = binary
    found = problems("staging", host_config(binary, backendBinarySha256="0" * 64),
                     {"sshPrivateKey": PRIVATE_KEY})
    assert list(found) == ["convex-selfhost:backendBinary: the file's SHA-256 is "
                     f"{hashlib.sha256(path.read_bytes()).hexdigest()}, not backendBinarySha256: "
                     "download it again, or check which release you meant."]


@pytest.mark.parametrize("overrides,key,text", [
    ({"backendBinaryUrl": "https://example.com/b"}, "backendBinary", "exactly one of"),
    ({"backendBinary": "", "backendBinaryUrl": "http://example.com/b"}, "backendBinaryUrl",
     "is not an https URL"),
    ({"backendBinarySha256": "abc"}, "backendBinarySha256", "64 hex characters"),
    ({"hostAddress": "-oProxyCommand=x"}, "hostAddress", "is not a host name"),
    ({"hostAddress": "a b"}, "hostAddress", "is not a host name"),
    ({"sshUser": "root;x"}, "sshUser", "is not a Linux user name"),
    ({"sshHostKey": "ssh-ed25519 short"}, "sshHostKey", "must be the host's public key"),
    ({"bindAddress": "::1"}, "bindAddress", "must be an IPv4 address"),
    ({"dashboard": True}, "dashboard", "runs the backend only"),
    ({"provisionPostgres": True}, "provisionPostgres", "external database"),
    ({"tlsProxy": True, "apiDomain": "api.example.com", "dashboard": False}, "tlsProxy",
     "reverse proxy"),
    ({"dataVolumeName": "vol"}, "dataVolumeName", "state directory"),
])
def test_bad_host_settings_name_the_key(binary, overrides, key, text):
    found = problems("staging", host_config(binary, **overrides),
                     {"sshPrivateKey": PRIVATE_KEY})
    assert any(p.startswith(f"convex-selfhost:{key}:") and text in p for p in found), found


def test_a_private_key_in_plain_text_or_not_a_key_is_refused(binary):
    found = problems("staging", host_config(binary, sshPrivateKey=PRIVATE_KEY))
    assert list(found) == ["convex-selfhost:sshPrivateKey: is stored in plain text in the stack "
                     "file; remove it and set it again with `pulumi config set --secret "
                     "sshPrivateKey ...`."]
    found = problems("staging", host_config(binary), {"sshPrivateKey": "not a key"})
    assert list(found) == ["convex-selfhost:sshPrivateKey: is not a private key in PEM/OpenSSH "
                     "form (a -----BEGIN ... PRIVATE KEY----- block)."]


def test_host_keys_on_the_docker_target_are_refused():
    found = problems("staging", {"hostAddress": "h.example.com", "sshHostKey": HOST_KEY})
    assert list(found) == [
        "convex-selfhost:hostAddress: only applies with `target: host`; remove it, or set "
        "`pulumi config set target host`.",
        "convex-selfhost:sshHostKey: only applies with `target: host`; remove it, or set "
        "`pulumi config set target host`."]
    assert list(problems("staging", {"target": "lxc"})) == [
        "convex-selfhost:target: 'lxc' is not one of 'docker', 'host', 'kubernetes'."]
