"""ConvexImages: a stack's pinned images, pulled once and shared by its deployments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_docker as docker


@dataclass(frozen=True)
class ImageSet:
    backend: str
    dashboard: Optional[str] = None
    postgres: Optional[str] = None
    caddy: Optional[str] = None
    python: Optional[str] = None  # runs scheduled backups


class ConvexImages(pulumi.ComponentResource):
    """Backend and dashboard images (one version), plus Postgres and Caddy when used.

    Containers reference an image's id, so bumping a tag replaces the containers and
    nothing else. keep_locally: removing an image on replacement would break containers
    of other stacks on the same host that run it.
    """

    backend: docker.RemoteImage
    dashboard: Optional[docker.RemoteImage]
    postgres: Optional[docker.RemoteImage]
    caddy: Optional[docker.RemoteImage]
    python: Optional[docker.RemoteImage]

    def __init__(self, name: str, images: ImageSet,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("convex:selfhost:Images", name, None, opts)

        def pull(role: str, image: Optional[str]) -> Optional[docker.RemoteImage]:
            if image is None:
                return None
            return docker.RemoteImage(f"{name}-{role}", name=image, keep_locally=True,
                                      opts=pulumi.ResourceOptions(parent=self))

        self.backend = pull("backend", images.backend)
        self.dashboard = pull("dashboard", images.dashboard)
        self.postgres = pull("postgres", images.postgres)
        self.caddy = pull("caddy", images.caddy)
        self.python = pull("python", images.python)
        self.register_outputs({"backend": self.backend.repo_digest})
