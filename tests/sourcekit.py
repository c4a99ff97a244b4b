"""A real SourceContext for source tests: events and source state in a SQLite file.

It does what the agent's context does for a source (numbered events, persisted state, atomic
commit of both) without a server, so a source can be driven step by step on a ManualClock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heady_agent.clock import Clock
from heady_agent.config import AgentConfig
from heady_agent.protocol import parse_event_data

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL,
                                   session TEXT, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


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
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.executescript(_SCHEMA)
        self._depth = 0
        self.sessions_changed_calls = 0
        self.dark_requests: list[float] = []

    def close(self) -> None:
        self.db.close()

    def emit(self, kind: str, session: str | None, data: dict[str, Any], ts: float | None = None) -> None:
        parse_event_data(kind, data)
        self.db.execute(
            "INSERT INTO events (ts, kind, session, data) VALUES (?, ?, ?, ?)",
            (self.clock.now() if ts is None else ts, kind, session, json.dumps(data)),
        )

    def notice(self, severity: str, message: str) -> None:
        self.emit("agent.notice", None, {"severity": severity, "message": message})

    def get_state(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_state(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))

    @contextmanager
    def atomic(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        self.db.execute("COMMIT")

    def sessions_changed(self) -> None:
        self.sessions_changed_calls += 1

    def go_dark(self, seconds: float) -> None:
        self.dark_requests.append(seconds)

    # --- reading back, for assertions ---------------------------------------------------

    def events(self, kind: str | None = None, since_seq: int = 0) -> list[Emitted]:
        sql = "SELECT seq, ts, kind, session, data FROM events WHERE seq > ?"
        params: list[Any] = [since_seq]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        rows = self.db.execute(sql + " ORDER BY seq", params).fetchall()
        return [Emitted(seq, ts, k, s, json.loads(d)) for seq, ts, k, s, d in rows]

    def last_seq(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
