"""TlsProxy: HTTPS on the deployment's domains, raw ports on loopback."""

from components.settings import KEYS_BY_NAME
from harness import evaluate


def test_prod_stack_serves_domains_through_caddy():
    run = evaluate("prod")
    proxy = run.containers()["convex-prod-proxy"]
    assert run.named("images-caddy").inputs["name"] == \
        KEYS_BY_NAME["caddyImage"].default
    assert {(p["internal"], p["external"], p["ip"]) for p in proxy.inputs["ports"]} == {
        (80, 80, "0.0.0.0"), (443, 443, "0.0.0.0")}
    (upload,) = proxy.inputs["uploads"]
    assert upload["file"] == "/etc/caddy/Caddyfile"
    caddyfile = upload["content"]
    assert "email ops@example.com" in caddyfile
    assert "api.convex.example.com {\n\treverse_proxy backend:3210\n}" in caddyfile
    assert "site.convex.example.com {\n\treverse_proxy backend:3211\n}" in caddyfile
    assert "dashboard.convex.example.com {\n\treverse_proxy dashboard:6791\n}" in caddyfile
    assert proxy.inputs["volumes"][0]["containerPath"] == "/data"
    assert run.named("convex-prod-tls-data").retain_on_delete
    containers = run.containers()
    for name in ("convex-prod-backend", "convex-prod-dashboard"):
        assert containers[name].urn in proxy.dependencies
        assert {p["ip"] for p in containers[name].inputs["ports"]} == {"127.0.0.1"}


def test_origins_follow_the_domains():
    run = evaluate("prod")
    assert run.outputs["backendUrl"] == "https://api.convex.example.com"
    assert run.outputs["siteUrl"] == "https://site.convex.example.com"
    assert run.outputs["dashboardUrl"] == "https://dashboard.convex.example.com"
    env = run.env("convex-prod-backend")
    assert env["CONVEX_CLOUD_ORIGIN"] == "https://api.convex.example.com"
    assert env["CONVEX_SITE_ORIGIN"] == "https://site.convex.example.com"
    assert run.env("convex-prod-dashboard")["NEXT_PUBLIC_DEPLOYMENT_URL"] == \
        "https://api.convex.example.com"


def test_without_dashboard_no_dashboard_route():
    run = evaluate("prod", {"dashboard": False, "dashboardDomain": None})
    caddyfile = run.containers()["convex-prod-proxy"].inputs["uploads"][0]["content"]
    assert "dashboard" not in caddyfile
