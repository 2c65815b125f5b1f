"""Another Pulumi program reusing the components with literal arguments, no stack config.

The README's "Use the components from your own program" shows this file.
"""

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.admin_key import issue_admin_key
from components.docker.backend import BackendArgs, ConvexBackend
from components.docker.dashboard import ConvexDashboard, DashboardArgs
from components.docker.docker_common import ContainerLimits

TAG = "652b828b5129e6cdbcaa3c20efa8d116d09ff3bf"
network = docker.Network("shop-net", name="shop-net")
image = docker.RemoteImage("backend-image", name=f"ghcr.io/get-convex/convex-backend:{TAG}",
                           keep_locally=True)
secret = random.RandomBytes("shop-secret", length=32)
backend = ConvexBackend("shop", BackendArgs(
    instance_name="shop",
    image=image.image_id,
    network_name=network.name,
    environment=secret.hex.apply(lambda hex_secret: [
        "INSTANCE_NAME=shop", f"INSTANCE_SECRET={hex_secret}",
        "CONVEX_CLOUD_ORIGIN=http://127.0.0.1:4210", "CONVEX_SITE_ORIGIN=http://127.0.0.1:4211"]),
    api_port=4210, site_port=4211,
    limits=ContainerLimits(memory_mb=2048, cpus="1.5"),
))
dashboard = ConvexDashboard("shop-dashboard", DashboardArgs(
    instance_name="shop", image=f"ghcr.io/get-convex/convex-dashboard:{TAG}",
    network_name=network.name, deployment_url="http://127.0.0.1:4210", port=4791))
pulumi.export("adminKey", pulumi.Output.secret(
    secret.hex.apply(lambda hex_secret: issue_admin_key("shop", hex_secret))))
