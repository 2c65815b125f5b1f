"""Admin keys and `.env.local`, derived in the program from the instance secret: the
same outputs on every target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from components.admin_key import issue_admin_key


def env_local(url: str, admin_key: str) -> str:
    """The `.env.local` lines `npx convex` reads for a self-hosted deployment."""
    return f"CONVEX_SELF_HOSTED_URL={url}\nCONVEX_SELF_HOSTED_ADMIN_KEY={admin_key}\n"


@dataclass(frozen=True)
class AdminKeys:
    admin_key: pulumi.Output[Optional[str]]
    read_only_admin_key: pulumi.Output[Optional[str]]
    env_local: pulumi.Output[Optional[str]]


def admin_keys(instance: str, url: str, instance_secret: pulumi.Output[str]) -> AdminKeys:
    # Keys exist as soon as the secret does; engines that report no value for it (a mock
    # engine without random's outputs) get no keys rather than a crash.
    key = pulumi.Output.secret(instance_secret.apply(
        lambda secret: issue_admin_key(instance, secret) if secret else None))
    read_only = pulumi.Output.secret(instance_secret.apply(
        lambda secret: issue_admin_key(instance, secret, read_only=True) if secret else None))
    local = pulumi.Output.secret(key.apply(lambda k: env_local(url, k) if k else None))
    return AdminKeys(key, read_only, local)


# The stack outputs every target exports, and the attribute of a deployment holding each.
OUTPUTS = {
    "backendUrl": "backend_url",
    "siteUrl": "site_url",
    "dashboardUrl": "dashboard_url",
    "instanceName": "instance_name",
    "instanceSecret": "instance_secret",
    "adminKey": "admin_key",
    "readOnlyAdminKey": "read_only_admin_key",
    "envLocal": "env_local",
}
