"""TlsProxy: HTTPS on the deployment's domains, raw ports on loopback, a golden Caddyfile."""

from harness import evaluate

from components.docker.tls_proxy import Route, build_caddyfile
from components.settings import KEYS_BY_NAME

PROD_CADDYFILE = """\
{
\temail ops@example.com
\tservers {
\t\tprotocols h1 h2
\t}
}

api.convex.example.com {
\trespond /metrics* 404
\treverse_proxy backend:3210
}

site.convex.example.com {
\trespond /metrics* 404
\treverse_proxy backend:3211
}

dashboard.convex.example.com {
\treverse_proxy dashboard:6791
}
"""


def caddyfile_of(run):
    (upload,) = run.containers()["convex-prod-proxy"].inputs["uploads"]
    assert upload["file"] == "/etc/caddy/Caddyfile"
    return upload["content"]


def test_prod_stack_serves_domains_through_caddy():
    run = evaluate("prod")
    proxy = run.containers()["convex-prod-proxy"]
    assert run.named("images-caddy").inputs["name"] == KEYS_BY_NAME["caddyImage"].default
    # TCP only: HTTP/3 is switched off in the Caddyfile, so no UDP port is needed.
    assert {(p["internal"], p["external"], p["ip"], p["protocol"])
            for p in proxy.inputs["ports"]} == {
        (80, 80, "0.0.0.0", "tcp"), (443, 443, "0.0.0.0", "tcp")}
    assert caddyfile_of(run) == PROD_CADDYFILE
    assert proxy.inputs["volumes"][0]["containerPath"] == "/data"
    assert proxy.inputs["destroyGraceSeconds"] == 10
    assert run.named("convex-prod-tls-data").retain_on_delete
    containers = run.containers()
    for name in ("convex-prod-backend", "convex-prod-dashboard"):
        assert {p["ip"] for p in containers[name].inputs["ports"]} == {"127.0.0.1"}
    # Started once backend and dashboard are healthy, and itself health-gated.
    for gate in ("convex-prod-backend-healthy", "convex-prod-dashboard-healthy"):
        assert run.named(gate).urn in proxy.dependencies
    assert run.named("convex-prod-tls-healthy").inputs["input"]["container_name"] == \
        "convex-prod-proxy"


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
    assert caddyfile_of(run) == PROD_CADDYFILE.replace(
        "\ndashboard.convex.example.com {\n\treverse_proxy dashboard:6791\n}\n", "")


def test_one_domain_serves_api_and_http_actions():
    run = evaluate("prod", {"siteDomain": None})
    assert caddyfile_of(run) == PROD_CADDYFILE.replace(
        "site.convex.example.com {\n\trespond /metrics* 404\n\treverse_proxy backend:3211\n}"
        "\n\n", "")
    assert run.outputs["siteUrl"] == "https://api.convex.example.com/http"
    assert run.env("convex-prod-backend")["CONVEX_SITE_ORIGIN"] == \
        "https://api.convex.example.com/http"


def test_caddyfile_without_email_has_only_server_options():
    assert build_caddyfile([Route("a.example.com", "backend:3210")]) == (
        "{\n\tservers {\n\t\tprotocols h1 h2\n\t}\n}\n\n"
        "a.example.com {\n\treverse_proxy backend:3210\n}\n")
