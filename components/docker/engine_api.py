"""Ask the local Docker engine over its socket, without starting a `docker` process.

The program asks the engine a few things on every run (its API version, the ports
containers publish, each container's health). Through the `docker` CLI each question
starts a process (10-20 ms of CPU each, 20 of them for ten deployments' gates). When
the stack deploys to the local engine as the docker provider itself finds it (no
`docker:host`, DOCKER_HOST unset or a unix:// address, no DOCKER_CONTEXT), the same
questions go to its socket directly; anywhere else (ssh://, tcp://, a context), and
whenever the socket cannot be used (missing, no permission), callers use the CLI.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from typing import Any, Mapping, Optional

DEFAULT_SOCKET = "/var/run/docker.sock"
TIMEOUT_SECONDS = 30


class EngineApiError(OSError):
    """The socket could not be asked (callers fall back to the CLI)."""


class NotFound(Exception):
    """The engine answered 404: no such object."""


def local_socket(docker_host: str, environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The socket path of the engine the docker provider uses, when it is local."""
    if docker_host or environ.get("DOCKER_CONTEXT"):
        return None
    host = environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://") and len(host) > len("unix://"):
        return host[len("unix://"):]
    return None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def get_json(socket_path: str, path: str, timeout: float = TIMEOUT_SECONDS) -> Any:
    """GET `path` (e.g. /version) from the engine; NotFound on 404, EngineApiError when the
    socket cannot be used or the answer is not JSON."""
    connection = _UnixConnection(socket_path, timeout)
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        raise EngineApiError(str(error)) from error
    finally:
        connection.close()
    if response.status == 404:
        raise NotFound(path)
    if response.status != 200:
        raise EngineApiError(f"HTTP {response.status}")
    try:
        return json.loads(body)
    except ValueError as error:
        raise EngineApiError("not JSON") from error


def container_path(name: str) -> str:
    return f"/containers/{urllib.parse.quote(name, safe='')}/json"
