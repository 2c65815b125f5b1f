"""engine_api: the local engine asked on its socket (a fake engine here), and which engine
counts as local."""

import http.server
import json
import socketserver
import subprocess
import threading

import pytest

from components.docker import engine, engine_api, health, port_check


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def fake_engine(tmp_path, monkeypatch):
    """A Docker-like API on a unix socket: routes maps a path to (status, body)."""
    routes, asked = {}, []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            status, body = routes.get(self.path, (404, {"message": "not found"}))
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

        def address_string(self):
            return "socket"

    path = str(tmp_path / "docker.sock")
    server = _Server(path, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(engine_api, "DEFAULT_SOCKET", path)
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", engine.OVERRIDE_VAR):
        monkeypatch.delenv(name, raising=False)

    def no_cli(*args, **kwargs):
        raise AssertionError(f"the CLI was run: {args}")
    monkeypatch.setattr(subprocess, "run", no_cli)
    yield routes, asked, path
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("docker_host, environ, expected", [
    ("", {}, "DEFAULT"),
    ("", {"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, "/run/user/1000/docker.sock"),
    ("", {"DOCKER_HOST": "unix://"}, None),
    ("", {"DOCKER_HOST": "ssh://deploy@host"}, None),
    ("", {"DOCKER_HOST": "tcp://10.0.0.5:2376"}, None),
    ("", {"DOCKER_CONTEXT": "remote"}, None),
    ("ssh://deploy@host", {}, None),
    ("unix:///var/run/docker.sock", {}, None),  # an explicit docker:host: the CLI decides
])
def test_only_the_providers_own_local_engine_is_asked_on_its_socket(docker_host, environ,
                                                                   expected):
    found = engine_api.local_socket(docker_host, environ)
    assert found == (engine_api.DEFAULT_SOCKET if expected == "DEFAULT" else expected)


def test_answers_not_found_and_failures(fake_engine):
    routes, _, path = fake_engine
    routes["/version"] = (200, {"ApiVersion": "1.41"})
    routes["/broken"] = (500, {"message": "boom"})
    routes["/garbage"] = (200, b"<html>")
    assert engine_api.get_json(path, "/version") == {"ApiVersion": "1.41"}
    with pytest.raises(engine_api.NotFound):
        engine_api.get_json(path, "/containers/x/json")
    for bad in ("/broken", "/garbage"):
        with pytest.raises(engine_api.EngineApiError):
            engine_api.get_json(path, bad)
    with pytest.raises(engine_api.EngineApiError):
        engine_api.get_json(path + ".missing", "/version")


def test_the_engine_version_comes_from_the_socket(fake_engine):
    routes, asked, _ = fake_engine
    routes["/version"] = (200, {"ApiVersion": "1.41", "Version": "20.10.24"})
    assert engine.detect("").api_version == (1, 41)
    assert asked == ["/version"]


def test_published_ports_come_from_the_socket(fake_engine):
    routes, _, _ = fake_engine
    routes["/containers/json"] = (200, [
        {"Names": ["/convex-dev-backend"], "Ports": [
            {"IP": "127.0.0.1", "PrivatePort": 3210, "PublicPort": 3210, "Type": "tcp"},
            {"PrivatePort": 9000, "Type": "tcp"}]},  # exposed, not published
        {"Names": ["/other"], "Ports": [
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
            {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]},
        "not a container"])
    assert port_check.published_by_containers("") == [
        ("convex-dev-backend", "127.0.0.1", 3210), ("other", "0.0.0.0", 8080),
        ("other", "::", 8080)]


def test_a_gate_reads_the_container_state_from_the_socket(fake_engine):
    routes, asked, _ = fake_engine
    check = {"Test": ["CMD", "curl", "-f", "http://127.0.0.1:3210/version"]}
    routes["/containers/convex-dev-backend/json"] = (200, {
        "State": {"Running": True, "Health": {"Status": "healthy"}},
        "Config": {"Healthcheck": check}})
    state = health._inspect_state("convex-dev-backend", "")
    assert state["Health"] == {"Status": "healthy"} and state["Healthcheck"] == check
    assert health.wait_until_healthy("convex-dev-backend", "", 5) == "healthy"
    with pytest.raises(health.HealthGateError, match="no such container convex-dev-gone"):
        health._inspect_state("convex-dev-gone", "")
    # A name is one path segment, whatever it holds.
    with pytest.raises(health.HealthGateError):
        health._inspect_state("../../version?x=1", "")
    assert asked[-1] == "/containers/..%2F..%2Fversion%3Fx%3D1/json"
