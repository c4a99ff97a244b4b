"""A hostile agent for tests: a real WebSocket server on loopback that speaks protocol 1 and sends
what a compromised node would: Textual markup, terminal escape sequences, HTML and Markdown,
huge strings, NaN and infinite numbers, impossible timestamps, session floods.

`HostileAgent(frames)` serves, on every connection, a hello and then `frames(since)` (the JSON
texts to send after the console's subscribe); the connection then stays open until the console
leaves. The console under test is real: a Supervisor, the Textual app, or `heady run --headless`
as a child process pointed at `agent.url`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

TOKEN = "hostile-agent-token-0123456789"
JOURNAL = "hostile-journal"
TS = 1_800_000_000.0

# Names a compromised node would give its sessions.
MARKUP_CLICK = "[@click=app.quit]x[/]"
MARKUP_CLOSE = "[/]"
OSC52_CLIPBOARD = "clip\x1b]52;c;cHduZWQ=\x07board"
WINDOW_TITLE = "title\x1b]0;pwned\x07bar"
CLEAR_SCREEN = "clear\x1b[2J\x1b[Hscreen"
C1_CSI = "c1\x9b31mred"
BIDI = "bidi\u202etxt.exe"
HTML = "<img src=x onerror=alert(1)><script>alert(2)</script>"
MARKDOWN = "![img](http://evil.example/x.png) [link](http://evil.example) | pipe\r\n| injected | row |"
HUGE = "H" * 100_000

# What must never reach the operator's terminal or a report.
ESCAPE_BYTES = ("\x1b", "\x9b", "\x07", "\u202e")


def hello(node_id: str = "hostile", hostname: str = "hostile-host") -> str:
    return json.dumps({
        "type": "hello", "protocol": 1,
        "node": {"id": node_id, "hostname": hostname, "agent_version": "0", "os": "Linux", "cpu_count": 2,
                 "mem_total": 2**30},
        "journal": {"id": JOURNAL, "first_seq": 1, "last_seq": 0},
    })  # fmt: skip


def event(seq: int, kind: str, session: str | None, data: dict[str, Any], ts: float | None = None) -> str:
    # json.dumps writes NaN and Infinity as bare words (a JSON extension pydantic also reads), as a hostile agent would.
    return json.dumps({"type": "event", "journal": JOURNAL, "seq": seq, "ts": TS + seq if ts is None else ts,
                       "kind": kind, "session": session, "data": data})  # fmt: skip


def metrics(seq: int, **fields: Any) -> str:
    body = {"type": "metrics", "journal": JOURNAL, "seq": seq, "ts": TS + seq, "cpu": 5.0, "load": [0.1, 0.1, 0.1],
            "mem": 10.0, "swap": 0.0}  # fmt: skip
    return json.dumps({**body, **fields})


def sessions(infos: list[dict[str, Any]]) -> str:
    return json.dumps({"type": "sessions", "sessions": infos})


def call(seq: int, session: str, **data: Any) -> str:
    return event(seq, "llm.call", session, {"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 10,
                                            "output_tokens": 5, "cost_usd": 0.01, **data})  # fmt: skip


HOSTILE_PROJECTS = {
    "s-click": MARKUP_CLICK,
    "s-close": MARKUP_CLOSE,
    "s-osc52": OSC52_CLIPBOARD,
    "s-title": WINDOW_TITLE,
    "s-clear": CLEAR_SCREEN,
    "s-c1": C1_CSI,
    "s-bidi": BIDI,
    "s-html": HTML,
    "s-md": MARKDOWN,
    "s-huge": HUGE,
}


def hostile_stream() -> list[str]:
    """Sessions with hostile names and calls, plus frames the console must refuse (each named)."""
    frames: list[str] = [metrics(1)]
    seq = 1
    for sid, text in HOSTILE_PROJECTS.items():
        seq += 1
        frames.append(event(seq, "session.started", sid, {"source": "claude-code", "project": text, "title": text,
                                                         "model": "claude-sonnet-4-5", "cwd": "/tmp/" + text}))  # fmt: skip
        seq += 1
        frames.append(call(seq, sid, error=text, ok=False))
    refused = [
        call(seq + 1, "s-click", cost_usd=float("nan")),
        call(seq + 2, "s-click", cost_usd=float("inf")),
        call(seq + 3, "s-click", cost_usd=-5.0),
        call(seq + 4, "s-click", input_tokens=-1),
        event(seq + 5, "session.state", "s-click", {"state": "idle"}, ts=1e14),
        metrics(seq + 6, cpu=float("nan")),
    ]
    frames += refused
    seq += len(refused) + 1
    frames.append(event(seq, "agent.notice", None, {"severity": "warning", "message": OSC52_CLIPBOARD + CLEAR_SCREEN}))
    frames.append(metrics(seq + 1))
    return frames


REFUSED_FIELDS = ("cost_usd", "input_tokens", "event.ts", "metrics.cpu")


def flood(per_frame: int = 2500) -> Iterator[str]:
    """Sessions frames without end, each announcing `per_frame` sessions never seen before."""
    for start in itertools.count(0, per_frame):
        yield sessions([{"id": f"flood-{i}", "source": "claude-code", "project": f"project-{i}", "title": f"title {i}",
                         "cwd": f"/work/{i}", "state": "running"} for i in range(start, start + per_frame)])  # fmt: skip


class HostileAgent:
    """Serve `frames` (computed per connection from the console's subscribe) on 127.0.0.1."""

    def __init__(self, frames: Callable[[dict[str, Any]], Iterable[str]], *, token: str = TOKEN) -> None:
        self.frames = frames
        self.token = token
        self.connections = 0
        self.sent = 0
        self._server: Server | None = None
        self.url = ""

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        try:
            await ws.send(hello())
            subscribe = json.loads(await ws.recv())
            for text in self.frames(subscribe):
                await ws.send(text)
                self.sent += 1
            async for _ in ws:  # acks and focus frames, until the console goes
                pass
        except ConnectionClosed:
            pass  # the console went away: what a test usually ends with

    def _check_token(self, connection: ServerConnection, request: Any) -> Any:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        return None

    async def __aenter__(self) -> HostileAgent:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check_token, max_size=None)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def once(frames: list[str]) -> Callable[[dict[str, Any]], list[str]]:
    """The frames on the first connection; afterwards only those past the console's stored cursor."""

    def after(subscribe: dict[str, Any]) -> list[str]:
        since = subscribe.get("since") or 0
        return [f for f in frames if json.loads(f).get("seq", since + 1) > since]

    return after
