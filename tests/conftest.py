import os
import sys
from pathlib import Path

import pulumi
import pytest

# Tests import the project's modules (components, policy) and the harness directly.
REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "integration: needs the Pulumi CLI and a Docker engine (opt-in: -m integration)")


# Under the mock engine no Docker engine is asked what it supports: the program is
# evaluated as for Engine 25+ (API 1.44), unless a test says otherwise.
os.environ.setdefault("CONVEX_SELFHOST_DOCKER_API_VERSION", "1.44")
# Nor asked which host ports are taken (tests/test_port_check.py turns it on).
os.environ.setdefault("CONVEX_SELFHOST_PORT_CHECK", "0")


@pytest.fixture(autouse=True)
def no_local_docker_socket(monkeypatch):
    """Unit tests never reach a Docker engine this machine may run: the local socket the
    program would ask (components/docker/engine_api.py) is a path that does not exist,
    so it asks through the CLI, which these tests fake. tests/test_engine_api.py serves
    its own socket."""
    from components.docker import engine_api
    monkeypatch.setattr(engine_api, "DEFAULT_SOCKET", "/nonexistent/convex-selfhost/docker.sock")


SDK_DEBUG = pulumi.log.debug  # the SDK's own, before any program here replaced it


@pytest.fixture(autouse=True)
def sdk_debug_restored():
    """The program drops the SDK's debug lines by replacing pulumi.log.debug
    (components/sdk_debug.py), also when a module-scoped fixture evaluates it: each test
    starts and ends with the SDK's own function."""
    pulumi.log.debug = SDK_DEBUG
    yield
    pulumi.log.debug = SDK_DEBUG
