"""A local server speaking the Prometheus HTTP API's range-query format (`/api/v1/query_range`, JSON
matrix), for the poller and the console without a real Prometheus. Each instance answers a constant
value per query at every step of the asked grid, until the step it stopped at (a stale series)."""

from __future__ import annotations

import json
import math
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

# Keyed by a fragment of the query; node_load15 before node_load1: the first fragment the query contains answers.
QUERY_KEYS = ("count by", "avg by", "node_load15", "node_load1", "node_load5", "MemAvailable", "MemTotal")


def node_answers(*, idle: float = 0.75, cores: float = 4, load1: float = 2.0, load5: float = 1.0,
                 load15: float = 0.5, avail: float = 3e9, total: float = 8e9) -> dict[str, float]:
    return {"count by": cores, "avg by": idle, "node_load15": load15, "node_load1": load1, "node_load5": load5,
            "MemAvailable": avail, "MemTotal": total}


@dataclass
class RangeRequest:
    query: str
    start: float
    end: float
    step: float
    auth: str | None


@dataclass
class FakePrometheus:
    url: str = ""
    nodes: dict[str, dict[str, float]] = field(default_factory=dict)  # instance -> query key -> value
    stopped_at: dict[str, float] = field(default_factory=dict)  # instance -> its last step
    raw: bytes | None = None  # answer this body to every query instead
    requests: list[RangeRequest] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)  # cleared: queries wait for it
    extra_points: list[tuple[str, float, float]] = field(default_factory=list)  # (instance, ts, value) off the grid

    def __post_init__(self) -> None:
        self.release.set()

    def answer(self, params: dict[str, list[str]], auth: str | None) -> bytes:
        request = RangeRequest(params["query"][0], float(params["start"][0]), float(params["end"][0]),
                               float(params["step"][0]), auth)
        self.requests.append(request)
        if self.raw is not None:
            return self.raw
        key = next(k for k in QUERY_KEYS if k in request.query)
        steps = [request.start + i * request.step
                 for i in range(math.floor((request.end - request.start) / request.step + 1e-9) + 1)]
        result = []
        for instance, values in self.nodes.items():
            if key not in values:
                continue
            last = self.stopped_at.get(instance, math.inf)
            points = [[ts, str(values[key])] for ts in steps if ts <= last]
            points += [[ts, str(v)] for inst, ts, v in self.extra_points if inst == instance]
            if points:
                result.append({"metric": {"instance": instance, "job": "node"}, "values": points})
        return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that give up (deadline tests, refused certificates) are expected here


@contextmanager
def fake_prometheus(tls: tuple[Path, Path] | None = None) -> Iterator[FakePrometheus]:
    """The fake on 127.0.0.1; `tls` = (certificate, key) serves https."""
    fake = FakePrometheus()

    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # a connection that sends nothing is dropped
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlparse(self.path)
            fake.release.wait(60)
            if url.path != "/api/v1/query_range":
                self.send_error(404)
                return
            body = fake.answer(parse_qs(url.query), self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = QuietServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        # The handshake happens in the request's thread: a client that gives up mid-way blocks only that one.
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        scheme = "https"
    fake.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
