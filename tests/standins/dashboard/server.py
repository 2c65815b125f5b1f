#!/usr/bin/env python3
"""Stand-in for the Convex dashboard image (ghcr.io/get-convex/convex-dashboard).

A TEST STAND-IN, not the dashboard: listens on 0.0.0.0:$PORT (default 6791, as the real image)
and answers 200 with a small HTML page naming NEXT_PUBLIC_DEPLOYMENT_URL on every path.
Logs each request line to stdout; SIGINT and SIGTERM stop it cleanly.
"""

from __future__ import annotations

import datetime
import html
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def log(message: str) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    print(f"{stamp} convex-dashboard-standin: {message}", flush=True)


def page() -> bytes:
    url = os.environ.get("NEXT_PUBLIC_DEPLOYMENT_URL", "")
    version = os.environ.get("STANDIN_VERSION", "unknown")
    return (
        "<!doctype html>\n<html><head><title>Convex Dashboard (stand-in)</title></head>\n"
        "<body><h1>Convex Dashboard (convex-selfhost test stand-in)</h1>\n"
        f"<p>Deployment URL: <code id=\"deployment-url\">{html.escape(url)}</code></p>\n"
        f"<p>Version: {html.escape(version)}</p>\n</body></html>\n").encode()


class Handler(BaseHTTPRequestHandler):
    server_version = "convex-dashboard-standin"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        log(f"{self.client_address[0]} {format % args}")

    def do_GET(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = page()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_POST = do_GET


def main() -> int:
    port = int(os.environ.get("PORT") or "6791")
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log(f"received {signal.Signals(signum).name}, shutting down")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"listening on 0.0.0.0:{port}; deployment URL "
        f"{os.environ.get('NEXT_PUBLIC_DEPLOYMENT_URL', '(unset)')}")
    while not stop.wait(3600):
        pass
    server.shutdown()
    server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
