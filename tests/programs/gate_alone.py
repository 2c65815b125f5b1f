"""A health gate on one container, built alone (tests/test_health.py)."""

import pulumi_docker as docker

from components.docker.health import HealthGate

container = docker.Container("web", name="web", image="nginx@sha256:" + "0" * 64)
HealthGate("web-healthy", container, 90)
