"""A capture receiver for recording: stores every OTLP/HTTP request a client sends, as it came.

Usage: otlp_capture.py --out DIR --port-file FILE
Each POST is saved as DIR/<n>-<signal>.<pb|json>[.gz] (the body exactly as sent) and described by
one line of DIR/requests.jsonl ({n, path, content_type, content_encoding, file}); the answer is an
empty success of the request's own encoding, as a collector gives. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 64 * 1024 * 1024  # a recording tool, not a receiver: only a runaway client is refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    counter = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length)
            content_type = self.headers.get("Content-Type", "")
            encoding = self.headers.get("Content-Encoding", "")
            signal = self.path.rstrip("/").rsplit("/", 1)[-1] or "root"
            ext = "json" if "json" in content_type else "pb"
            with lock:
                counter[0] += 1
                n = counter[0]
                name = f"{n:04d}-{signal}.{ext}" + (".gz" if encoding == "gzip" else "")
                (out / name).write_bytes(body)
                with open(out / "requests.jsonl", "a") as log:
                    log.write(json.dumps({"n": n, "path": self.path, "content_type": content_type,
                                          "content_encoding": encoding, "file": name}) + "\n")
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


if __name__ == "__main__":
    main()
