"""A capture receiver for recording: stores every OTLP request a client sends, as it came.

Usage: otlp_capture.py --out DIR --port-file FILE [--grpc-port-file FILE]
Each POST is saved as DIR/<n>-<signal>.<pb|json>[.gz] (the body exactly as sent) and described by
one line of DIR/requests.jsonl ({n, path, content_type, content_encoding, file}); the answer is an
empty success of the request's own encoding, as a collector gives. With --grpc-port-file it also
takes OTLP/gRPC (LogsService/MetricsService Export) on a second port: each message is saved as
protobuf the same way, as gRPC hands it over (any gzip undone: gRPC does not tell whether the client
compressed), listed under the HTTP path of its signal with `"transport": "grpc"`. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

MAX_BODY = 64 * 1024 * 1024  # a recording tool, not a receiver: only a runaway client is refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--grpc-port-file", type=Path)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    counter = [0]

    def keep(path: str, body: bytes, ext: str, listed: dict[str, str]) -> None:
        signal = path.rstrip("/").rsplit("/", 1)[-1] or "root"
        with lock:
            counter[0] += 1
            n = counter[0]
            name = f"{n:04d}-{signal}.{ext}" + (".gz" if listed.get("content_encoding") == "gzip" else "")
            (out / name).write_bytes(body)
            with open(out / "requests.jsonl", "a") as log:
                log.write(json.dumps({"n": n, "path": path, **listed, "file": name}) + "\n")

    if args.grpc_port_file is not None:
        grpc_server = serve_grpc(keep)
        args.grpc_port_file.write_text(str(grpc_server.add_insecure_port("127.0.0.1:0")))
        grpc_server.start()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length)
            content_type = self.headers.get("Content-Type", "")
            encoding = self.headers.get("Content-Encoding", "")
            ext = "json" if "json" in content_type else "pb"
            keep(self.path, body, ext, {"content_type": content_type, "content_encoding": encoding})
            answer = b"{}" if ext == "json" else b""
            self.send_response(200)
            self.send_header("Content-Type", "application/json" if ext == "json" else "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    args.port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


def serve_grpc(keep: Any) -> grpc.Server:
    """The OTLP/gRPC services, taking each message as bytes and answering an empty export response."""
    services = {"/v1/logs": logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"],
                "/v1/metrics": metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"]}

    def exporter(path: str) -> grpc.RpcMethodHandler:
        def export(body: bytes, context: grpc.ServicerContext) -> bytes:
            keep(path, body, "pb", {"content_type": "application/x-protobuf", "content_encoding": "", "transport": "grpc"})
            return b""

        return grpc.unary_unary_rpc_method_handler(export)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.max_receive_message_length", MAX_BODY)])
    server.add_generic_rpc_handlers(tuple(
        grpc.method_handlers_generic_handler(service.full_name, {"Export": exporter(path)}) for path, service in services.items()))
    return server


if __name__ == "__main__":
    main()
