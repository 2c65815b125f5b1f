"""components/port_check.py: a port someone else holds is a configuration problem, found
before anything is created."""

import socket
import subprocess

import pytest
from harness import evaluate

from components.docker import port_check
from components.docker.port_check import PlannedPort, parse_ps, problems

PS = ("convex-dev-backend\t127.0.0.1:3210->3210/tcp, 127.0.0.1:3211->3211/tcp\n"
      "web\t0.0.0.0:6791->80/tcp, :::6791->80/tcp\n"
      "ranges\t[::]:8000-8002->8000-8002/tcp\n"
      "quiet\t\n"
      "exposed-only\t5432/tcp\n")


def test_ps_output_is_read_with_addresses_and_ranges():
    assert parse_ps(PS) == [
        ("convex-dev-backend", "127.0.0.1", 3210), ("convex-dev-backend", "127.0.0.1", 3211),
        ("web", "0.0.0.0", 6791), ("web", "::", 6791),
        ("ranges", "::", 8000), ("ranges", "::", 8001), ("ranges", "::", 8002)]


def planned(key, port, address="127.0.0.1", instance="convex-dev"):
    return PlannedPort(key, address, port, frozenset(
        f"{instance}-{role}" for role in ("backend", "dashboard", "proxy")))


def test_another_container_on_the_port_is_named_with_the_key():
    found = problems([planned("backendPort", 3210), planned("dashboardPort", 6791)],
                     parse_ps(PS.replace("convex-dev-backend", "old-compose-backend")),
                     local=False)
    assert found == [
        "backendPort: port 3210 on 127.0.0.1 is already published by container "
        "'old-compose-backend', which is not part of this deployment. Stop that container, "
        "or choose another port: `pulumi config set backendPort <port>`.",
        # 0.0.0.0 and :: take the port on every address, 127.0.0.1 included.
        "dashboardPort: port 6791 on 127.0.0.1 is already published by container 'web', "
        "which is not part of this deployment. Stop that container, or choose another port: "
        "`pulumi config set dashboardPort <port>`."]


def test_the_deployments_own_containers_and_other_addresses_are_fine():
    held = parse_ps(PS)
    assert problems([planned("backendPort", 3210), planned("sitePort", 3211)], held,
                    local=True, listening=lambda a, p: pytest.fail("ours: not probed")) == []
    assert problems([planned("backendPort", 3210, address="10.1.2.3")], held, local=False) == []
    # Another deployment's containers are not ours, even when its name extends ours
    # (convex-dev-zz-a-backend is not convex-dev-zz's).
    assert problems([planned("backendPort (b)", 3210, instance="convex-dev-b")], held,
                    local=False)[0].startswith("backendPort (b): port 3210")
    extended = [("convex-dev-zz-a-backend", "127.0.0.1", 3210)]
    assert problems([planned("backendPort", 3210, instance="convex-dev-zz")], extended,
                    local=False)[0].startswith("backendPort: port 3210")


def test_a_local_process_on_the_port_is_found_only_on_the_local_engine():
    asked = []

    def listening(address, port):
        asked.append((address, port))
        return True

    assert problems([planned("sitePort", 4000)], [], local=False, listening=listening) == []
    assert asked == []
    found = problems([planned("sitePort (b)", 4000)], [], local=True, listening=listening)
    assert found == ["sitePort (b): port 4000 on 127.0.0.1 is already in use by a process on "
                     "this machine (see `ss -ltnp 'sport = :4000'`). Stop it, or choose "
                     "another port: `pulumi config set sitePort <port>`."]


def test_a_real_listener_is_seen_and_a_free_port_is_not():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_check.listening_elsewhere("127.0.0.1", port) is True
    assert port_check.listening_elsewhere("127.0.0.1", port) is False
    assert port_check.listening_elsewhere("203.0.113.9", port) is False  # not our address


@pytest.mark.parametrize("host,env,local", [
    ("", {}, True), ("unix:///var/run/docker.sock", {}, True), ("ssh://u@h", {}, False),
    ("", {"DOCKER_HOST": "tcp://h:2376"}, False), ("", {"DOCKER_CONTEXT": "remote"}, False)])
def test_only_the_local_socket_counts_as_this_machine(host, env, local):
    assert port_check.engine_is_local(host, env) is local


def test_an_engine_that_cannot_be_asked_checks_nothing(monkeypatch):
    monkeypatch.setattr(port_check.shutil, "which", lambda name: "/usr/bin/docker")
    monkeypatch.setattr(port_check.subprocess, "run", lambda c, **k: subprocess.CompletedProcess(
        c, 1, "", "Cannot connect"))
    assert port_check.published_by_containers("ssh://h") is None

    def hangs(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(port_check.subprocess, "run", hangs)
    assert port_check.published_by_containers("") is None


def test_the_program_refuses_a_taken_port_before_creating_anything(monkeypatch):
    monkeypatch.setenv("CONVEX_SELFHOST_PORT_CHECK", "1")
    monkeypatch.setattr(port_check, "published_by_containers",
                        lambda host: [("someone-else", "0.0.0.0", 3211)])
    monkeypatch.setattr(port_check, "listening_elsewhere", lambda a, p: False)
    with pytest.raises(Exception) as failed:
        evaluate("dev")
    message = str(failed.value)
    assert "stack 'dev' has 1 configuration problem (nothing was changed)" in message
    assert "sitePort: port 3211 on 127.0.0.1 is already published by container " \
        "'someone-else'" in message
    monkeypatch.setenv("CONVEX_SELFHOST_PORT_CHECK", "0")
    assert evaluate("dev").resources


def test_every_spelling_of_every_interface_takes_the_port_everywhere():
    for address in ("0.0.0.0", "::", "::ffff:0.0.0.0"):
        found = problems([planned("sitePort", 4001)], [("other", address, 4001)], local=False)
        assert found and found[0].startswith("sitePort: port 4001"), address
    assert problems([planned("sitePort", 4001)], [("other", "10.0.0.9", 4001)],
                    local=False) == []
