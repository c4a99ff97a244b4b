"""A local stand-in for the OpenAI API, speaking its real streaming formats, for recording and
replaying real clients (Codex CLI: Responses API; opencode: Chat Completions).

- `POST /v1/responses` (stream): `response.created`, text deltas, `response.output_item.done`
  (assistant message or a `function_call`), `response.completed` with usage.
- `POST /v1/chat/completions` (stream): `chat.completion.chunk`s, `tool_calls` deltas, a last
  chunk with usage, `[DONE]`.
- `GET /v1/models`: the models it answers for.

Usage is seeded: answer N of a server started with seed S always has the same token counts and
server time. A prompt containing `RUN: <command>` is answered with a shell tool call first and a
text answer once the tool's output comes back; `SPAWN: <task>` starts a Codex sub-agent with that
task, waits for it, then answers. Faults come from a schedule file
(`{"rules": [{"match": "TEXT", "fault": "400"|"429"|"500"|"broken", "times": N|null, "retry_after": "1"|null}]}`):
a request whose latest user text contains TEXT gets the fault, `times` times (null: always); a 429
carries `Retry-After: <retry_after>` (1 s unless the rule says null: no hint).

Responses answers carry Codex's account rate-limit headers (`x-codex-primary-*`, `x-codex-secondary-*`).

Every answer is one JSON line in the log: which request it answered (`n`, the client's request
headers), model, HTTP status, ok, fault, usage, server time in ms.

Run: `python tests/fake_openai.py --port-file PORT --log LOG [--schedule FILE] [--seed N]`
(binds 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODELS = ("gpt-5-codex", "gpt-5", "gpt-5-mini")
RUN_MARKER = "RUN: "
SPAWN_MARKER = "SPAWN: "
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
# Headers a client uses to name its request or session, copied into the log.
CLIENT_HEADERS = ("x-client-request-id", "session_id", "conversation_id", "x-request-id", "user-agent")


@dataclass
class Rule:
    match: str
    fault: str  # "400", "429", "500" or "broken"
    times: int | None  # None: every matching request
    retry_after: str | None = "1"  # Retry-After header (seconds) of a 429; None: no hint
    used: int = 0


@dataclass
class Usage:
    input_tokens: int  # including the cached part, as OpenAI reports it
    cached_tokens: int
    output_tokens: int  # including reasoning
    reasoning_tokens: int
    server_ms: int  # how long the answer is held before it completes

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cached_tokens": self.cached_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }


def seeded_usage(seed: int, n: int) -> Usage:
    """The usage of answer `n`: the same for the same seed, every run."""
    rng = random.Random(f"{seed}:{n}")
    input_tokens = rng.randint(2_000, 9_000)
    output_tokens = rng.randint(20, 400)
    return Usage(
        input_tokens=input_tokens,
        cached_tokens=rng.randint(0, input_tokens // 256) * 256,
        output_tokens=output_tokens,
        reasoning_tokens=rng.randint(0, output_tokens // 2),
        server_ms=rng.randint(50, 125),
    )


@dataclass
class FakeOpenAI:
    seed: int
    log_path: Path
    rules: list[Rule] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    _count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self, text: str) -> tuple[int, Rule | None]:
        """The answer's number and the fault rule it follows (None: a good answer)."""
        with self._lock:
            self._count += 1
            for rule in self.rules:
                if rule.match in text and (rule.times is None or rule.used < rule.times):
                    rule.used += 1
                    return self._count, rule
            return self._count, None

    def log(self, entry: dict[str, Any]) -> None:
        with self._lock, open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")


def rate_limit_headers(started_at: float, n: int) -> dict[str, str]:
    """Codex's account rate-limit headers for answer `n`: a 5-hour and a weekly window filling up."""
    return {
        "x-codex-primary-used-percent": f"{min(100.0, 1.5 * n):.1f}",
        "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-at": str(int(started_at) + 5 * 3600),
        "x-codex-secondary-used-percent": f"{min(100.0, 0.25 * n):.2f}",
        "x-codex-secondary-window-minutes": "10080",
        "x-codex-secondary-reset-at": str(int(started_at) + 7 * 86400),
    }


def load_rules(path: Path | None) -> list[Rule]:
    if path is None:
        return []
    raw = json.loads(path.read_text(encoding="utf-8"))
    return [
        Rule(match=str(r["match"]), fault=str(r["fault"]), times=r.get("times"), retry_after=r.get("retry_after", "1"))
        for r in raw.get("rules", [])
    ]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _latest_user_text(items: list[Any]) -> str:
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            return _text_of(item.get("content"))
    return ""


def _directive(text: str, marker: str) -> str | None:
    at = text.rfind(marker)
    if at < 0:
        return None
    return text[at + len(marker) :].splitlines()[0].strip() or None


def _agent_id(output: Any) -> str | None:
    """The id of the agent a spawn_agent call started, from the tool's output."""
    text = output if isinstance(output, str) else json.dumps(output)
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("agent_id", "id", "target"):
            if isinstance(parsed.get(key), str):
                return str(parsed[key])
    match = _UUID.search(text)
    return match.group(0) if match else None


def _tool_names(tools: list[Any]) -> dict[str, str | None]:
    """The tools a request offers: name -> the namespace it is in (Codex groups some), or None."""
    names: dict[str, str | None] = {}
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "namespace":
            for inner in tool.get("tools") or []:
                if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                    names[inner["name"]] = str(tool.get("name"))
        name = tool.get("name") or (tool.get("function") or {}).get("name")
        if isinstance(name, str):
            names.setdefault(name, None)
    return names


def _next_tool_call(tools: list[Any], items: list[Any], text: str, n: int) -> tuple[str, str, str, str | None] | None:
    """(tool name, JSON arguments, call id, namespace) the answer calls, or None for a text answer.

    `RUN: <command>` runs it with the client's shell tool; `SPAWN: <task>` starts a sub-agent
    (Codex `spawn_agent`) with that task and then waits for it (`wait_agent`). Once the tool's
    output is back, the answer is text.
    """
    names = _tool_names(tools)
    last = items[-1] if items else {}
    if isinstance(last, dict) and last.get("role") == "tool":
        return None
    if isinstance(last, dict) and last.get("type") in ("function_call_output", "custom_tool_call_output"):
        if str(last.get("call_id") or "").startswith("call_spawn_") and "wait_agent" in names:
            agent = _agent_id(last.get("output"))
            if agent is not None:
                return "wait_agent", json.dumps({"targets": [agent], "timeout_ms": 30000}), f"call_wait_{n}", names["wait_agent"]
        return None
    command = _directive(text, RUN_MARKER)
    shell = _shell_call(names, command) if command else None
    if shell is not None:
        return shell[0], shell[1], f"call_{n}", names[shell[0]]
    task = _directive(text, SPAWN_MARKER)
    if task and "spawn_agent" in names:
        return "spawn_agent", json.dumps({"message": task}), f"call_spawn_{n}", names["spawn_agent"]
    return None


def _shell_call(names: dict[str, str | None], command: str) -> tuple[str, str] | None:
    """(tool name, JSON arguments) running `command` with a shell tool the client offers."""
    if "exec_command" in names:
        return "exec_command", json.dumps({"cmd": command})
    if "shell_command" in names:
        return "shell_command", json.dumps({"command": command})
    if "shell" in names:
        return "shell", json.dumps({"command": ["bash", "-lc", command]})
    if "bash" in names:  # opencode
        return "bash", json.dumps({"command": command, "description": "run the requested command"})
    return None


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # the JSONL log is the record
        return

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in MODELS]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        received = time.time()
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/responses"):
            self._answer("responses", body, body.get("input") or [], received)
        elif path.endswith("/chat/completions"):
            self._answer("chat", body, body.get("messages") or [], received)
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            self.server.fake.log({"path": path, "status": 404, "ok": False, "received_at": received})

    def _answer(self, api: str, body: dict[str, Any], items: list[Any], received: float) -> None:
        fake = self.server.fake
        text = _latest_user_text(items)
        n, rule = fake.next_answer(text)
        fault = rule.fault if rule else None
        usage = seeded_usage(fake.seed, n)
        model = str(body.get("model") or "")
        response_id = f"resp_{fake.seed}_{n:04d}" if api == "responses" else f"chatcmpl-{fake.seed}-{n:04d}"
        entry: dict[str, Any] = {
            "n": n,
            "api": api,
            "response_id": response_id,
            "model": model,
            "fault": fault,
            "received_at": received,
            "client": {h: self.headers[h] for h in CLIENT_HEADERS if self.headers.get(h)},
        }
        time.sleep(usage.server_ms / 1000.0)
        if fault in ("400", "429", "500"):
            status = int(fault)
            kind = {400: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
            hint = rule.retry_after if rule and status == 429 else None
            self._json(status, {"error": {"message": f"injected {status}", "type": kind, "code": kind}},
                       {"retry-after": hint} if hint else None)
            fake.log({**entry, "status": status, "ok": False, "usage": None, "server_ms": _ms(received)})
            return
        call = _next_tool_call(body.get("tools") or [], items, text, n)
        reply = f"Answer {n}." if call is None else None
        self._start_stream(rate_limit_headers(fake.started_at, n) if api == "responses" else {})
        broken = fault == "broken"
        if api == "responses":
            self._responses_stream(response_id, model, usage, reply, call, n, broken)
        else:
            self._chat_stream(response_id, model, usage, reply, call, n, broken, body)
        self.close_connection = True
        fake.log({
            **entry,
            "status": 200,
            "ok": not broken,
            "usage": None if broken else usage.as_dict(),
            "tool_call": call[0] if call else None,
            "server_ms": _ms(received),
        })

    # --- Responses API ---------------------------------------------------------------------

    def _responses_stream(self, rid: str, model: str, usage: Usage, reply: str | None,
                          call: tuple[str, str, str, str | None] | None, n: int, broken: bool) -> None:
        base = {"id": rid, "object": "response", "created_at": int(time.time()), "model": model, "status": "in_progress"}
        self._event("response.created", {"type": "response.created", "response": base})
        self._event("response.in_progress", {"type": "response.in_progress", "response": base})
        if call is not None:
            item: dict[str, Any] = {"type": "function_call", "id": f"fc_{n}", "call_id": call[2],
                                    "name": call[0], "arguments": call[1], "status": "completed"}
            if call[3]:
                item["namespace"] = call[3]
            self._event("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                                        "item": {**item, "arguments": "", "status": "in_progress"}})
            if broken:
                return
        else:
            text = reply or ""
            item = {"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
            self._event("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                                        "item": {**item, "content": [], "status": "in_progress"}})
            half = len(text) // 2
            self._event("response.output_text.delta", {"type": "response.output_text.delta", "item_id": item["id"],
                                                        "output_index": 0, "content_index": 0, "delta": text[:half]})
            if broken:
                return
            self._event("response.output_text.delta", {"type": "response.output_text.delta", "item_id": item["id"],
                                                        "output_index": 0, "content_index": 0, "delta": text[half:]})
        self._event("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item})
        done = {**base, "status": "completed", "output": [item], "usage": {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        }}
        self._event("response.completed", {"type": "response.completed", "response": done})

    # --- Chat Completions -------------------------------------------------------------------

    def _chat_stream(self, cid: str, model: str, usage: Usage, reply: str | None, call: tuple[str, str, str, str | None] | None,
                     n: int, broken: bool, body: dict[str, Any]) -> None:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            self._data({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

        chunk({"role": "assistant", "content": ""})
        if call is not None:
            chunk({"tool_calls": [{"index": 0, "id": call[2], "type": "function",
                                   "function": {"name": call[0], "arguments": ""}}]})
            if broken:
                return
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": call[1]}}]})
            finish = "tool_calls"
        else:
            text = reply or ""
            chunk({"content": text[: len(text) // 2]})
            if broken:
                return
            chunk({"content": text[len(text) // 2 :]})
            finish = "stop"
        chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage", True):
            self._data({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                        "usage": {"prompt_tokens": usage.input_tokens,
                                  "completion_tokens": usage.output_tokens,
                                  "total_tokens": usage.input_tokens + usage.output_tokens,
                                  "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
                                  "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens}}})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    # --- wire ---------------------------------------------------------------------------------

    def _start_stream(self, headers: dict[str, str]) -> None:
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()

    def _event(self, name: str, data: dict[str, Any]) -> None:
        self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _data(self, data: dict[str, Any]) -> None:
        self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)


def _ms(since: float) -> float:
    return round((time.time() - since) * 1000.0, 1)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeOpenAI, port: int = 0) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--schedule", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    server = Server(FakeOpenAI(seed=args.seed, log_path=args.log, rules=load_rules(args.schedule)), args.port)
    if args.port_file:
        args.port_file.write_text(str(server.server_address[1]), encoding="utf-8")
    server.serve_forever()


if __name__ == "__main__":
    main()
