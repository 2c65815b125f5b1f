"""What the target Docker engine supports, asked once per program run.

A healthcheck's start interval (fast probes while a container starts) needs Engine 25
(API 1.44); older engines refuse a container that sets it ("requires API version 1.44").
The program asks the engine the docker provider talks to (`docker:host`, else
DOCKER_HOST and friends): the local engine on its socket, any other with the `docker`
CLI. Where it cannot ask (no CLI, engine not reachable during a preview), it leaves the
start interval out, which every engine accepts: Docker then reports a first start
healthy within one normal interval instead of a second (the health gates run the test
themselves and do not wait for that).
CONVEX_SELFHOST_DOCKER_API_VERSION=1.44 (for example) skips the question.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional

from components.docker import engine_api

OVERRIDE_VAR = "CONVEX_SELFHOST_DOCKER_API_VERSION"
START_INTERVAL_API = (1, 44)


@dataclass(frozen=True)
class EngineFeatures:
    api_version: Optional[tuple[int, int]]  # None: unknown

    @property
    def start_interval(self) -> bool:
        return self.api_version is not None and self.api_version >= START_INTERVAL_API


def parse_api_version(text: str) -> Optional[tuple[int, int]]:
    match = re.fullmatch(r"\s*(\d{1,3})\.(\d{1,3})\s*", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def detect(docker_host: str = "") -> EngineFeatures:
    if OVERRIDE_VAR in os.environ:
        return EngineFeatures(parse_api_version(os.environ[OVERRIDE_VAR]))
    socket_path = engine_api.local_socket(docker_host)
    if socket_path:
        try:
            answer = engine_api.get_json(socket_path, "/version")
            if isinstance(answer, dict) and isinstance(answer.get("ApiVersion"), str):
                return EngineFeatures(parse_api_version(answer["ApiVersion"]))
        except (engine_api.EngineApiError, engine_api.NotFound):
            pass  # ask through the CLI instead
    if shutil.which("docker") is None:
        return EngineFeatures(None)
    command = ["docker"] + (["--host", docker_host] if docker_host else []) + [
        "version", "--format", "{{.Server.APIVersion}}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return EngineFeatures(None)
    return EngineFeatures(parse_api_version(done.stdout) if done.returncode == 0 else None)
