"""A SourceContext for source tests on the agent's real Journal, without a server.

It does what the agent's context does for a source (numbered events, persisted state, atomic
commit of both), so a source can be driven step by step on a ManualClock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heady_agent.clock import Clock
from heady_agent.config import AgentConfig
from heady_agent.journal import Journal
from heady_agent.protocol import parse_event_data


@dataclass(frozen=True)
class Emitted:
    seq: int
    ts: float
    kind: str
    session: str | None
    data: dict[str, Any]


class SqliteSourceContext:
    """Every emitted event is validated against its kind's wire model, so a malformed one fails the test."""

    def __init__(self, path: Path, config: AgentConfig, clock: Clock, node_id: str = "test-node") -> None:
        self.path = path
        self.config = config
        self.clock = clock
        self.node_id = node_id
        self.journal = Journal(path, clock=clock)
        self.sessions_changed_calls = 0
        self.dark_requests: list[float] = []

    def close(self) -> None:
        self.journal.close()

    def emit(self, kind: str, session: str | None, data: dict[str, Any], ts: float | None = None) -> None:
        parse_event_data(kind, data)
        ts = self.clock.now() if ts is None else ts
        self.journal.append({"type": "event", "ts": ts, "kind": kind, "session": session, "data": data})

    def notice(self, severity: str, message: str) -> None:
        self.emit("agent.notice", None, {"severity": severity, "message": message})

    def get_state(self, key: str) -> str | None:
        return self.journal.get_state(key)

    def set_state(self, key: str, value: str) -> None:
        self.journal.set_state(key, value)

    @contextmanager
    def atomic(self) -> Iterator[None]:
        with self.journal.transaction():
            yield

    def sessions_changed(self) -> None:
        self.sessions_changed_calls += 1

    def go_dark(self, seconds: float) -> None:
        self.dark_requests.append(seconds)

    # --- reading back, for assertions ---------------------------------------------------

    def events(self, kind: str | None = None, since_seq: int = 0) -> list[Emitted]:
        found = []
        for batch in self.journal.replay_since(since_seq):
            for seq, body in batch:
                frame = json.loads(body)
                if kind is None or frame["kind"] == kind:
                    found.append(Emitted(seq, frame["ts"], frame["kind"], frame["session"], frame["data"]))
        return found

    def last_seq(self) -> int:
        return self.journal.committed_seq
