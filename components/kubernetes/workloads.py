"""What the Kubernetes target sends the API server, as plain functions of a deployment spec:
labels, the backend's environment split into plain values and Secret references, probes,
resources and security contexts. The component (stack.py) only wires them together.

Facts this relies on (upstream self-hosted/docker-build/):
* Dockerfile.backend: ubuntu, WORKDIR /convex, `./run_backend.sh` as entrypoint, files
  mode 744 owned by root (so the backend runs as root: no other user may execute them),
  data in /convex/data, ports 3210 (API) and 3211 (HTTP actions); `/version` answers once
  the backend serves.
* Dockerfile.dashboard: `USER nextjs` (uid 1001, group 1001), `node ./server.js` on 6791.
* crates/postgres/src/lib.rs: a starting backend takes a lease and the older one stops
  (LeaseLostError): never two backends on one database, hence one replica and a
  StatefulSet, which replaces its single pod only after the old one is gone.
"""

from __future__ import annotations

import math
from typing import Optional

from pulumi_kubernetes.core.v1 import (
    CapabilitiesArgs,
    ContainerPortArgs,
    EnvVarArgs,
    EnvVarSourceArgs,
    HTTPGetActionArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    SeccompProfileArgs,
    SecretKeySelectorArgs,
    SecurityContextArgs,
)

from components.core.backend import CA_CERT_PATH, backend_env, secret_env_names
from components.core.spec import DeploymentSpec

API_PORT, SITE_PORT, DASHBOARD_PORT = 3210, 3211, 6791
DATA_PATH = "/convex/data"
DASHBOARD_UID = 1001  # the image's nextjs user
BACKUP_UID = 65534  # nobody: the backup client needs no privileges
PROBE_PERIOD = 5
MANAGED_BY = "convex-selfhost"
# Placeholders while the entries are put together; NUL never appears in a real value.
SECRET_SLOT, DATABASE_SLOT = "\x00instance-secret\x00", "\x00database-url\x00"


def labels(spec: DeploymentSpec, component: str) -> dict[str, str]:
    """Recommended labels; `component` (backend, dashboard, backup) also selects pods."""
    return {"app.kubernetes.io/name": f"convex-{component}",
            "app.kubernetes.io/instance": spec.instance_name,
            "app.kubernetes.io/managed-by": MANAGED_BY}


def selector(spec: DeploymentSpec, component: str) -> dict[str, str]:
    found = labels(spec, component)
    return {k: found[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}


def backend_secret_name(spec: DeploymentSpec) -> str:
    return f"{spec.instance_name}-backend"


def _entries(spec: DeploymentSpec) -> list[tuple[str, str]]:
    """The backend's environment (core/backend.py), with placeholders where the instance
    secret and the database URL go."""
    database = DATABASE_SLOT if spec.database.kind != "sqlite" else None
    return [tuple(entry.split("=", 1)) for entry in backend_env(spec, SECRET_SLOT, database)]


def split_environment(spec: DeploymentSpec) -> tuple[list[tuple[str, str]], list[str]]:
    """(plain NAME/value pairs, names of the secret variables, kept in the Secret)."""
    secret = secret_env_names(spec)
    entries = _entries(spec)
    return ([(name, value) for name, value in entries if name not in secret],
            [name for name, _ in entries if name in secret])


def secret_values(spec: DeploymentSpec, instance_secret: str, database_url: str
                  ) -> dict[str, str]:
    """The backend Secret's data: every secret variable's value, filled in."""
    secret = secret_env_names(spec)
    return {name: value.replace(SECRET_SLOT, instance_secret).replace(DATABASE_SLOT,
                                                                      database_url)
            for name, value in _entries(spec) if name in secret}


def backend_env_vars(spec: DeploymentSpec) -> list[EnvVarArgs]:
    plain, secret = split_environment(spec)
    result = [EnvVarArgs(name=name, value=value) for name, value in plain]
    result += [EnvVarArgs(name=name, value_from=EnvVarSourceArgs(
        secret_key_ref=SecretKeySelectorArgs(name=backend_secret_name(spec), key=name)))
        for name in secret]
    return result


def resources(spec: DeploymentSpec) -> Optional[ResourceRequirementsArgs]:
    """memoryLimitMb and cpus as limits and equal requests (Guaranteed when both are set)."""
    amounts = {}
    if spec.resources.memory_limit_mb:
        amounts["memory"] = f"{spec.resources.memory_limit_mb}Mi"
    if spec.resources.cpus:
        amounts["cpu"] = f"{round(float(spec.resources.cpus) * 1000)}m"
    return ResourceRequirementsArgs(limits=amounts, requests=amounts) if amounts else None


def http_probe(path: str, port: int, failures: int, period: int = PROBE_PERIOD) -> ProbeArgs:
    return ProbeArgs(http_get=HTTPGetActionArgs(path=path, port=port), period_seconds=period,
                     timeout_seconds=5, failure_threshold=failures)


def backend_probes(spec: DeploymentSpec) -> dict[str, ProbeArgs]:
    """A startup budget of backendStartTimeoutSeconds (first starts run migrations), then
    readiness and liveness on /version."""
    budget = math.ceil(spec.resources.backend_start_timeout_seconds / PROBE_PERIOD)
    return {"startup_probe": http_probe("/version", API_PORT, max(budget, 1)),
            "readiness_probe": http_probe("/version", API_PORT, 3),
            "liveness_probe": http_probe("/version", API_PORT, 6, period=10)}


def container_security(run_as: Optional[int] = None,
                       read_only_root: bool = False) -> SecurityContextArgs:
    """No privilege escalation, no capabilities, the runtime's seccomp profile; a non-root
    user where the image allows one."""
    return SecurityContextArgs(
        allow_privilege_escalation=False, privileged=False,
        capabilities=CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=SeccompProfileArgs(type="RuntimeDefault"),
        run_as_non_root=True if run_as else None, run_as_user=run_as, run_as_group=run_as,
        read_only_root_filesystem=read_only_root or None)


def backend_ports() -> list[ContainerPortArgs]:
    return [ContainerPortArgs(name="api", container_port=API_PORT),
            ContainerPortArgs(name="site", container_port=SITE_PORT)]


def ca_mount_path() -> str:
    return CA_CERT_PATH


def await_timeout(spec: DeploymentSpec) -> str:
    """How long pulumi waits for the backend's rollout: its start budget plus scheduling
    and image pulls, at least the provider's default of 10 minutes."""
    return f"{max(600, spec.resources.backend_start_timeout_seconds + 300)}s"
