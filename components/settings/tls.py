"""The optional Caddy TLS proxy: its domains, ACME email, ports and image.

Values here end up in a generated Caddyfile, so each is checked against a grammar that
leaves no room for braces, newlines or spaces: nothing can add a site block.
"""

from __future__ import annotations

import re
from typing import Optional

from components.settings.model import TlsSettings
from components.settings.network import check_domain, check_ip, check_port
from components.settings.reader import Reader

DOMAIN_KEYS = ("apiDomain", "siteDomain", "dashboardDomain")
_EMAIL_PATTERN = re.compile(
    r"[A-Za-z0-9._%+-]{1,64}@(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def read_domains(reader: Reader) -> dict[str, str]:
    return {name: check_domain(reader, name) for name in DOMAIN_KEYS}


def read_tls(reader: Reader, domains: dict[str, str], dashboard: bool) -> Optional[TlsSettings]:
    if not reader.boolean("tlsProxy"):
        for name in DOMAIN_KEYS + ("tlsEmail",):
            if reader.string(name):
                reader.problem(name, "is set but tlsProxy is false; set tlsProxy to true to "
                                     "serve the domains over HTTPS, or remove it.")
        return None
    email = reader.string("tlsEmail")
    if email and not _EMAIL_PATTERN.fullmatch(email):
        reader.problem("tlsEmail", f"{reader.shown('tlsEmail')} is not an email address "
                                   "(letters, digits and ._%+- before the @, a lowercase "
                                   "domain after it).")
        email = ""
    http_port = check_port(reader, "httpPort")
    https_port = check_port(reader, "httpsPort")
    if http_port is not None and http_port == https_port:
        reader.problem("httpsPort", "is the same as httpPort; give each listener its own port.")
    bind = check_ip(reader, "tlsBindAddress")
    if None in (http_port, https_port):
        bind = None  # a port is reported already: no clash checks against a stand-in port
    tls = TlsSettings(email=email, bind_address=bind or "",
                      http_port=http_port or 80, https_port=https_port or 443,
                      image=reader.image("caddyImage"))
    if not domains["apiDomain"] and not reader.string("apiDomain"):
        reader.problem("apiDomain", "is required when tlsProxy is true; set the public domain "
                                    "whose DNS points at this Docker host.")
    if dashboard and not domains["dashboardDomain"] and not reader.string("dashboardDomain"):
        reader.problem("dashboardDomain", "is required when tlsProxy and dashboard are true; "
                                          "set the dashboard's public domain.")
    if not dashboard and reader.string("dashboardDomain"):
        reader.problem("dashboardDomain", "is set but dashboard is false; remove it, or set "
                                          "dashboard to true.")
    seen: dict[str, str] = {}
    for name in DOMAIN_KEYS:
        value = domains[name]
        if value and value in seen:
            reader.problem(name, f"is the same domain as {seen[value]}; each role needs a "
                                 "domain of its own (leave siteDomain empty to serve HTTP "
                                 "actions under https://<apiDomain>/http).")
        seen.setdefault(value, name)
    for name in ("cloudOrigin", "siteOrigin", "publicHost"):
        if reader.string(name):
            reader.problem(name, "is set together with tlsProxy; with the proxy the origins "
                                 "follow the domains (https://apiDomain, https://siteDomain). "
                                 "Remove it.")
    return tls
