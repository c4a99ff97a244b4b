"""A local Anthropic Messages API for real clients (Claude Code) and the tests replaying them.

It speaks the streaming format the real API speaks (`POST /v1/messages` as server-sent events,
`POST /v1/messages/count_tokens`), answers on loopback only, and logs every answer it gives as
one JSON line: which client request it answered, the model, the HTTP status, the token usage,
how long the server took, and whether the client got a whole response.

Usage is seeded (the same run gives the same figures) and splits cache writes into 5-minute and
1-hour parts. A schedule file injects faults into chosen requests; prompts drive tool calls:

    [[tool:Bash:{"command": "echo hi", "description": "say hi"}]]   answer with that tool call

Schedule (JSON): {"faults": [{"match": "RETRY-ME", "fault": "429", "times": 1}, ...]}
`match` is a substring of the request's latest user text; `fault` is one of 429, 500, 529,
broken (the stream stops after its content blocks, before `message_delta`; a non-streaming answer
stops halfway through its body), error_event (an `error` event after the first text delta);
a rule applies to its first `times` matching requests that carry tools (the main conversation,
not side requests), or to any request with "any_request": true.

A subscription's windows, as the real API reports them to a claude.ai login on every Messages
answer (`anthropic-ratelimit-unified-*` headers), are sent when the schedule names them:

    {"unified_limits": {"5h": {"utilization": 0.39, "resets_in_s": 7200, "per_answer": 0.01},
                        "7d": {"utilization": 0.155, "resets_in_s": 400000}}}

`utilization` is the spent fraction (0..1) at the first answer, raised by `per_answer` (default 0)
for each answer after it; `resets_in_s` puts the window's reset that many seconds after the
schedule is loaded (clients drop a reset in the past).

Run: python tests/fake_anthropic.py --log answers.jsonl [--schedule faults.json] [--port-file f]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
TOOL_DIRECTIVE = re.compile(r"\[\[tool:([A-Za-z_]+):(\{.*?\})\]\]", re.S)
FAULT_STATUS = {"429": 429, "500": 500, "529": 529}
ERROR_TYPES = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
UNIFIED_WINDOWS = {"5h": "five_hour", "7d": "seven_day"}  # header name: the claim it stands for


@dataclass
class FaultRule:
    match: str
    fault: str
    times: int = 1
    any_request: bool = False
    used: int = 0


@dataclass
class UnifiedWindow:
    name: str  # the window's name in the headers: 5h or 7d
    utilization: float
    resets_at: int  # epoch seconds
    per_answer: float = 0.0


@dataclass
class Schedule:
    rules: list[FaultRule] = field(default_factory=list)
    windows: list[UnifiedWindow] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None) -> Schedule:
        if path is None:
            return cls()
        raw = json.loads(path.read_text())
        rules = []
        for item in raw.get("faults", []):
            fault = str(item["fault"])
            if fault not in (*FAULT_STATUS, "broken", "error_event"):
                raise ValueError(f"unknown fault {fault!r} in {path}")
            rules.append(FaultRule(str(item["match"]), fault, int(item.get("times", 1)), bool(item.get("any_request", False))))
        now = int(time.time())
        windows = []
        for name, item in raw.get("unified_limits", {}).items():
            if name not in UNIFIED_WINDOWS:
                raise ValueError(f"unknown unified window {name!r} in {path}")
            windows.append(UnifiedWindow(name, float(item["utilization"]), now + int(item["resets_in_s"]),
                                         float(item.get("per_answer", 0.0))))
        return cls(rules, windows)

    def take(self, text: str, has_tools: bool) -> str | None:
        """The fault this request gets, if a rule with uses left matches it."""
        for rule in self.rules:
            if rule.used < rule.times and rule.match in text and (has_tools or rule.any_request):
                rule.used += 1
                return rule.fault
        return None

    def limit_headers(self, answer: int) -> list[tuple[str, str]]:
        """The unified rate-limit headers of the `answer`-th answer (from 1); none when not scheduled."""
        if not self.windows:
            return []
        used = {w.name: min(1.0, w.utilization + w.per_answer * (answer - 1)) for w in self.windows}
        first = min(self.windows, key=lambda w: w.resets_at)
        status = "rejected" if max(used.values()) >= 1.0 else "allowed"
        headers = [("anthropic-ratelimit-unified-status", status),
                   ("anthropic-ratelimit-unified-reset", str(first.resets_at)),
                   ("anthropic-ratelimit-unified-representative-claim", UNIFIED_WINDOWS[first.name])]
        for w in self.windows:
            headers += [(f"anthropic-ratelimit-unified-{w.name}-status", "rejected" if used[w.name] >= 1.0 else "allowed"),
                        (f"anthropic-ratelimit-unified-{w.name}-reset", str(w.resets_at)),
                        (f"anthropic-ratelimit-unified-{w.name}-utilization", f"{used[w.name]:.4g}")]
        return headers


def latest_user_text(body: dict[str, Any]) -> tuple[str, bool]:
    """The text of the last user message, and whether that message answers a tool call."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return "", False
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content, False
        texts: list[str] = []
        tool_result = False
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict):
                if block.get("type") == "text" and isinstance(block.get("text"), str):
                    texts.append(block["text"])
                elif block.get("type") == "tool_result":
                    tool_result = True
        return "\n".join(texts), tool_result
    return "", False


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class FakeAnthropic:
    """The server; `start()` binds a loopback port and serves on a thread until `stop()`."""

    def __init__(self, log_path: Path, schedule: Schedule | None = None, seed: int = 7, delay_ms: tuple[int, int] = (40, 120)) -> None:
        self.log_path = log_path
        self.schedule = schedule or Schedule()
        self.seed = seed
        self.delay_ms = delay_ms
        self._lock = threading.Lock()
        self._count = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    def start(self, port: int = 0) -> int:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # the JSONL log says what happened
                pass

            def do_POST(self) -> None:
                server._handle(self)

            def do_GET(self) -> None:
                server._not_found(self)

        self._httpd = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-anthropic", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # --- answering ----------------------------------------------------------------------

    def _next(self) -> tuple[int, random.Random]:
        with self._lock:
            self._count += 1
            n = self._count
        return n, random.Random(self.seed * 1_000_003 + n)

    def _log(self, entry: dict[str, Any]) -> None:
        with self._lock, open(self.log_path, "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")

    def _not_found(self, h: BaseHTTPRequestHandler) -> None:
        self._json(h, 404, {"type": "error", "error": {"type": "not_found_error", "message": f"no route {h.path}"}}, None)

    def _json(self, h: BaseHTTPRequestHandler, status: int, obj: dict[str, Any], request_id: str | None,
              answer: int = 0) -> None:
        payload = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(payload)))
        if request_id:
            h.send_header("request-id", request_id)
        self._limits(h, answer)
        if status == 429:
            h.send_header("retry-after", "0")
        h.end_headers()
        h.wfile.write(payload)

    def _limits(self, h: BaseHTTPRequestHandler, answer: int) -> None:
        for name, value in self.schedule.limit_headers(answer) if answer else []:
            h.send_header(name, value)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length) if length else b""
        path = h.path.split("?", 1)[0]
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if path == "/v1/messages/count_tokens":
            self._json(h, 200, {"input_tokens": max(1, len(raw) // 4)}, None)
            return
        if path != "/v1/messages" or not isinstance(body, dict):
            self._not_found(h)
            return
        n, rng = self._next()
        request_id = f"req_fake{self.seed:02d}{n:06d}"
        message_id = f"msg_fake{self.seed:02d}{n:06d}"
        model = str(body.get("model") or "")
        text, answers_tool = latest_user_text(body)
        has_tools = bool(body.get("tools"))
        fault = self.schedule.take(text, has_tools)
        entry: dict[str, Any] = {
            "n": n,
            "request_id": request_id,
            "message_id": message_id,
            "model": model,
            "stream": bool(body.get("stream")),
            "client": {
                "retry_count": h.headers.get("x-stainless-retry-count"),
                "session": h.headers.get("x-claude-code-session-id"),
                "has_tools": has_tools,
                "answers_tool": answers_tool,
                "prompt": text[-120:],
                "body_sha256": hashlib.sha256(raw).hexdigest()[:16],
            },
            "fault": fault,
        }
        time.sleep(rng.randint(*self.delay_ms) / 1000.0)
        if fault in FAULT_STATUS:
            status = FAULT_STATUS[fault]
            self._json(h, status, {"type": "error", "error": {"type": ERROR_TYPES[status], "message": f"injected {status}"}},
                       request_id, n)
            self._log({**entry, "status": status, "ok": False, "usage": None, "server_ms": self._ms(started)})
            return
        usage = self._usage(rng, body)
        content = self._content(text, answers_tool, has_tools, body, rng)
        try:
            if body.get("stream"):
                complete = self._stream(h, n, message_id, model, usage, content, fault, request_id)
            else:
                complete = self._whole(h, n, message_id, model, usage, content, fault, request_id)
        except (BrokenPipeError, ConnectionResetError):
            complete = False
        self._log({**entry, "status": 200, "ok": complete, "usage": usage, "server_ms": self._ms(started),
                   "stop_reason": content["stop_reason"] if complete else None})

    @staticmethod
    def _ms(started: float) -> float:
        return round((time.monotonic() - started) * 1000.0, 1)

    @staticmethod
    def _usage(rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
        write_5m = rng.choice([0, 0, rng.randint(200, 4000)])
        write_1h = rng.choice([0, rng.randint(100, 3000)])
        return {
            "input_tokens": rng.randint(3, 60),
            "cache_creation_input_tokens": write_5m + write_1h,
            "cache_read_input_tokens": rng.choice([0, rng.randint(2000, 30000)]),
            "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
            "output_tokens": rng.randint(8, 400),
            "service_tier": "standard",
        }

    @staticmethod
    def _content(text: str, answers_tool: bool, has_tools: bool, body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        directive = TOOL_DIRECTIVE.search(text) if has_tools and not answers_tool else None
        if directive is not None and directive.group(1) in tools:
            tool_input = json.loads(directive.group(2))
            tool_id = f"toolu_fake{rng.randint(0, 10**12):012d}"
            return {"stop_reason": "tool_use", "blocks": [
                {"type": "text", "text": "Running it."},
                {"type": "tool_use", "id": tool_id, "name": directive.group(1), "input": tool_input},
            ]}
        reply = "Done: the tool ran." if answers_tool else f"Answer {rng.randint(1, 9999)}."
        return {"stop_reason": "end_turn", "blocks": [{"type": "text", "text": reply}]}

    @staticmethod
    def _cut(h: BaseHTTPRequestHandler) -> None:
        """Drop the connection mid-answer, as a dying proxy or server does."""
        h.close_connection = True
        h.connection.shutdown(socket.SHUT_RDWR)

    def _whole(self, h: BaseHTTPRequestHandler, n: int, message_id: str, model: str, usage: dict[str, Any],
               content: dict[str, Any], fault: str | None, request_id: str) -> bool:
        if fault == "broken":
            payload = json.dumps({"id": message_id, "type": "message", "model": model, "content": content["blocks"]}).encode()
            h.send_response(200)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(payload)))
            h.send_header("request-id", request_id)
            self._limits(h, n)
            h.end_headers()
            h.wfile.write(payload[: len(payload) // 2])
            h.wfile.flush()
            self._cut(h)
            return False
        self._json(h, 200, {"id": message_id, "type": "message", "role": "assistant", "model": model,
                            "content": content["blocks"], "stop_reason": content["stop_reason"],
                            "stop_sequence": None, "usage": usage}, request_id, n)
        return True

    def _stream(self, h: BaseHTTPRequestHandler, n: int, message_id: str, model: str, usage: dict[str, Any],
                content: dict[str, Any], fault: str | None, request_id: str) -> bool:
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("cache-control", "no-cache")
        h.send_header("connection", "close")
        h.send_header("request-id", request_id)
        self._limits(h, n)
        h.end_headers()
        start_usage = {k: v for k, v in usage.items() if k != "output_tokens"} | {"output_tokens": 1}
        out = h.wfile
        out.write(sse("message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}}))
        out.write(sse("ping", {"type": "ping"}))
        for index, block in enumerate(content["blocks"]):
            if block["type"] == "text":
                out.write(sse("content_block_start", {"type": "content_block_start", "index": index,
                                                      "content_block": {"type": "text", "text": ""}}))
                words = block["text"].split(" ")
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    out.write(sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                          "delta": {"type": "text_delta", "text": piece}}))
                    out.flush()
                    if fault == "error_event":
                        out.write(sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "injected mid-stream error"}}))
                        out.flush()
                        h.close_connection = True
                        return False
            else:
                out.write(sse("content_block_start", {"type": "content_block_start", "index": index, "content_block":
                                                      {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}))
                out.write(sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta":
                                                      {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}}))
            out.write(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        if fault == "broken":
            out.flush()
            self._cut(h)
            return False
        out.write(sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": content["stop_reason"], "stop_sequence": None},
                                        "usage": {"output_tokens": usage["output_tokens"]}}))
        out.write(sse("message_stop", {"type": "message_stop"}))
        out.flush()
        h.close_connection = True
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, required=True, help="JSONL file the server appends each answer to")
    parser.add_argument("--schedule", type=Path, help="JSON file of faults to inject")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    args = parser.parse_args()
    server = FakeAnthropic(args.log, Schedule.load(args.schedule), args.seed)
    port = server.start(args.port)
    if args.port_file:
        args.port_file.write_text(str(port))
    print(f"fake anthropic on http://{LOOPBACK}:{port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
