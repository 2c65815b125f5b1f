"""ConvexImages: the stack's pinned images, pulled once and shared by its deployments."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_docker as docker

from components.settings import StackSettings


class ConvexImages(pulumi.ComponentResource):
    """Backend and dashboard images (one version), plus Postgres and Caddy when used.

    Containers reference an image's id, so bumping a tag replaces the containers and
    nothing else. keep_locally: removing an image on replacement would break containers
    of other stacks on the same host that run it.
    """

    def __init__(self, name: str, settings: StackSettings,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:Images", name, None, opts)

        def pull(role: str, image: str) -> docker.RemoteImage:
            return docker.RemoteImage(f"{name}-{role}", name=image, keep_locally=True,
                                      opts=pulumi.ResourceOptions(parent=self))

        self.backend = pull("backend", settings.backend_image)
        self.dashboard = pull("dashboard", settings.dashboard_image) if settings.dashboard else None
        self.postgres = (pull("postgres", settings.database.postgres_image)
                         if settings.database.kind == "provisioned-postgres" else None)
        self.caddy = pull("caddy", settings.tls.image) if settings.tls else None
        self.register_outputs({"backend": self.backend.repo_digest})
