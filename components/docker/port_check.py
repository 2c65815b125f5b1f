"""Host ports the stack will publish that something else already holds, found before
anything is created.

Docker refuses a container whose port is taken only when it starts it, halfway through
`pulumi up` ("Bind for 127.0.0.1:3211 failed: port is already allocated", inside a
provider traceback). The program asks the engine first: a running container that is not
one of this stack's deployments and publishes the same port, or (local engine only) a
process listening on it, is a configuration problem naming the key and the port.
Where the engine cannot be asked (no CLI, unreachable during a preview), nothing is
checked: `pulumi up` then reports Docker's own error. CONVEX_SELFHOST_PORT_CHECK=0 turns
the check off (the mock-engine tests do).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from components import rules
from components.docker import engine_api

_PORT = re.compile(r"^(?P<address>.*):(?P<first>\d+)(?:-(?P<last>\d+))?->")


@dataclass(frozen=True)
class PlannedPort:
    key: str  # the configuration key that chose it, as messages name it
    address: str  # host address it is published on
    port: int
    owners: frozenset[str]  # this deployment's own containers that may already hold it


def planned_ports(settings) -> list[PlannedPort]:
    """Every host port the stack's containers publish."""
    ports = []
    for d in settings.deployments:
        suffix = f" ({d.key})" if settings.multi else ""
        owner = frozenset(f"{d.instance_name}-{role}" for role in ("backend", "dashboard",
                                                                     "proxy"))
        ports += [PlannedPort(f"backendPort{suffix}", settings.bind_address, d.backend_port,
                              owner),
                  PlannedPort(f"sitePort{suffix}", settings.bind_address, d.site_port, owner)]
        if settings.dashboard:
            ports.append(PlannedPort(f"dashboardPort{suffix}", settings.bind_address,
                                     d.dashboard_port, owner))
        if settings.tls and settings.tls.bind_address:
            ports += [PlannedPort("httpPort", settings.tls.bind_address, settings.tls.http_port,
                                  owner),
                      PlannedPort("httpsPort", settings.tls.bind_address,
                                  settings.tls.https_port, owner)]
    return ports


def _docker(docker_host: str) -> list[str]:
    return ["docker"] + (["--host", docker_host] if docker_host else [])


def published_by_containers(docker_host: str) -> Optional[list[tuple[str, str, int]]]:
    """(container name, host address, port) for every running container, or None when the
    engine cannot be asked."""
    socket_path = engine_api.local_socket(docker_host)
    if socket_path:
        try:
            return parse_containers(engine_api.get_json(socket_path, "/containers/json"))
        except (engine_api.EngineApiError, engine_api.NotFound):
            pass  # ask through the CLI instead
    if shutil.which("docker") is None:
        return None
    command = _docker(docker_host) + ["ps", "--format", "{{.Names}}\t{{.Ports}}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return parse_ps(done.stdout)


def parse_containers(listed) -> list[tuple[str, str, int]]:
    """The same as parse_ps, from the engine's GET /containers/json (running ones)."""
    held = []
    for container in listed if isinstance(listed, list) else []:
        if not isinstance(container, dict):
            continue
        name = str((container.get("Names") or [""])[0]).lstrip("/")
        for port in container.get("Ports") or []:
            if isinstance(port, dict) and isinstance(port.get("PublicPort"), int):
                held.append((name, str(port.get("IP") or "0.0.0.0"), port["PublicPort"]))
    return held


def parse_ps(printed: str) -> list[tuple[str, str, int]]:
    held = []
    for line in printed.splitlines():
        name, _, ports = line.partition("\t")
        for entry in ports.split(","):
            match = _PORT.match(entry.strip())
            if not match:
                continue
            address = match["address"].strip("[]") or "0.0.0.0"
            first = int(match["first"])
            last = int(match["last"] or first)
            held += [(name.strip(), address, port) for port in range(first, last + 1)]
    return held


def _every_interface(address: str) -> bool:
    ip = rules.bind_address(address)  # the settings' reading: ::ffff:0.0.0.0 is 0.0.0.0
    return ip is not None and ip.is_unspecified


def _same_place(a: str, b: str) -> bool:
    return a == b or _every_interface(a) or _every_interface(b)


def engine_is_local(docker_host: str, environ=os.environ) -> bool:
    """Whether published ports land on this machine (the local socket, no context)."""
    host = docker_host or environ.get("DOCKER_HOST", "")
    return (not host or host.startswith("unix://")) and not environ.get("DOCKER_CONTEXT")


def listening_elsewhere(address: str, port: int) -> bool:
    """True when a process on this machine already listens on address:port."""
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address, port))
    except OSError as error:
        return error.errno == errno.EADDRINUSE
    return False


def problems(planned: Iterable[PlannedPort], held: list[tuple[str, str, int]],
             local: bool, listening: Optional[Callable[[str, int], bool]] = None
             ) -> list[str]:
    listening = listening or listening_elsewhere
    found = []
    for want in planned:
        holders = sorted({name for name, address, port in held
                          if port == want.port and _same_place(address, want.address)})
        others = [name for name in holders if name not in want.owners]
        where = f"port {want.port} on {want.address}"
        if others:
            found.append(
                f"{want.key}: {where} is already published by container "
                f"{', '.join(repr(n) for n in others)}, which is not part of this deployment. "
                f"Stop that container, or choose another port: "
                f"`pulumi config set {want.key.split(' ')[0]} <port>`.")
        elif not holders and local and listening(want.address, want.port):
            found.append(
                f"{want.key}: {where} is already in use by a process on this machine "
                f"(see `ss -ltnp 'sport = :{want.port}'`). Stop it, or choose another port: "
                f"`pulumi config set {want.key.split(' ')[0]} <port>`.")
    return found


SWITCH_VAR = "CONVEX_SELFHOST_PORT_CHECK"


def check(settings, docker_host: str) -> list[str]:
    """The problems for this stack's ports on its engine ([] when it cannot be asked)."""
    if os.environ.get(SWITCH_VAR, "1") == "0":
        return []
    held = published_by_containers(docker_host)
    if held is None:
        return []
    return problems(planned_ports(settings), held, engine_is_local(docker_host))
