"""The `serve` command's HTTP server (standard library only): /metrics and a status page from one snapshot."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from timemachine.health.collector import DEFAULT_INCOMPLETE_AFTER_SECONDS, HealthSnapshot, collect, discover_shares
from timemachine.health.inputs import ShareInputs
from timemachine.health.metrics import CONTENT_TYPE, render
from timemachine.health.report import html_report


class SnapshotSource:
    """Collects at most once per min_interval, however often it is scraped: a share of 100k bands is a long walk."""

    def __init__(
        self,
        root: str,
        inputs: Callable[[], ShareInputs],
        *,
        min_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.inputs = inputs
        self.min_interval = min_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._snapshot: HealthSnapshot | None = None

    def snapshot(self) -> HealthSnapshot:
        with self._lock:
            now = self.clock()
            if self._snapshot is None or not 0 <= now - self._snapshot.now < self.min_interval:
                given = self.inputs()
                self._snapshot = collect(
                    self.root,
                    given.specs or discover_shares(self.root),
                    now,
                    up=given.up,
                    node_registered=given.node_registered,
                    incomplete_after_seconds=given.incomplete_after_seconds or DEFAULT_INCOMPLETE_AFTER_SECONDS,
                    down_reasons=given.down_reasons,
                )
            return self._snapshot


def make_server(source: SnapshotSource, bind: str, port: int) -> ThreadingHTTPServer:
    """A server (not yet serving) for /metrics and /; port 0 picks a free one."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "timemachine-health"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE, render(source.snapshot()))
            elif path == "/":
                self._send(200, "text/html; charset=utf-8", html_report(source.snapshot()).encode("utf-8"))
            elif path == "/healthz":
                # The container's health check: the server answers (without a collection, which may be slow).
                self._send(200, "text/plain; charset=utf-8", b"ok\n")
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try / or /metrics\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # One line per request on stderr is noise at a 15-second scrape interval.
            pass

    server = ThreadingHTTPServer((bind, port), Handler)
    server.daemon_threads = True
    return server
