"""The agent's journal: every metrics/event frame, numbered, kept in SQLite (WAL).

Seq is strictly increasing per journal id and survives restarts, so a console that was away
resumes from its cursor. A journal that cannot be opened is moved aside and a new one (new id)
starts, which the console sees as a journal reset rather than a crash.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clock import Clock
from .files import private_dir, private_file
from .protocol import MAX_FRAME_BYTES

log = logging.getLogger("heady_agent.journal")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- `at` is when the agent journalled the frame (retention by age); a frame's own ts may be older.
CREATE TABLE IF NOT EXISTS frames (seq INTEGER PRIMARY KEY, at REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS frames_at ON frames (at);
CREATE TABLE IF NOT EXISTS source_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Queued work items, one row each, in `pos` order (the front can go below zero): a change
-- writes one row, not the whole queue.
CREATE TABLE IF NOT EXISTS work_queue (pos INTEGER PRIMARY KEY, managed TEXT NOT NULL, args TEXT NOT NULL);
"""

REPLAY_BATCH = 500
REPLAY_BATCH_BYTES = 1 << 20  # a batch stops after the row that reaches this size


@dataclass(frozen=True)
class Appended:
    seq: int
    text: str  # the frame as sent on the wire


class JournalError(Exception):
    """The journal file cannot be used at all (not even after moving it aside)."""


class FrameTooLarge(ValueError):
    """A frame whose wire text is bigger than a console accepts; nothing was written."""

    def __init__(self, size: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
        self.size = size


@dataclass(frozen=True)
class QueuedItem:
    pos: int  # the row's key: remove it with Journal.queue_remove
    managed: str
    args: list[str]


class Journal:
    """Synchronous on purpose: each write is one small row, and the agent's loop is the only writer."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock,
        retention_rows: int = 1_000_000,
        retention_days: float = 7.0,
    ) -> None:
        self.path = path
        self.clock = clock
        self.retention_rows = retention_rows
        self.retention_days = retention_days
        self.id = ""
        self.last_seq = 0  # last seq assigned (possibly not yet committed inside atomic())
        self.committed_seq = 0  # last seq visible to readers outside the open transaction
        self.reset_notice: str | None = None  # set when a corrupt journal was moved aside
        self._db: sqlite3.Connection | None = None
        self._depth = 0
        self._open()

    # --- opening ------------------------------------------------------------------------

    def _open(self) -> None:
        private_dir(self.path.parent)
        try:
            self._connect()
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(self.clock.now())}")
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    side.rename(aside.with_name(aside.name + suffix))
            self.reset_notice = f"journal {self.path} was unreadable ({exc}); moved it to {aside} and started a new journal"
            log.error("%s", self.reset_notice)
            try:
                self._connect()
            except sqlite3.DatabaseError as again:
                raise JournalError(f"{self.path}: cannot create a journal: {again}") from None

    def _connect(self) -> None:
        # SQLite gives -wal and -shm the database file's mode, so that one is made private first;
        # the side files are fixed too in case an older agent left them readable.
        private_file(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL")
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                private_file(side)
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        # A database that opens but is damaged inside fails here rather than mid-stream.
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        row = db.execute("SELECT value FROM meta WHERE key='journal_id'").fetchone()
        if row is None:
            self.id = secrets.token_hex(8)
            db.execute("INSERT INTO meta(key, value) VALUES ('journal_id', ?)", (self.id,))
        else:
            self.id = row[0]
        max_row = db.execute("SELECT MAX(seq) FROM frames").fetchone()[0] or 0
        kept = db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        self.last_seq = max(max_row, int(kept[0]) if kept else 0)
        self.committed_seq = self.last_seq

    def _close_quietly(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("journal is closed")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- writing ------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Frames appended and state set inside commit together (nesting joins the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        db = self.db
        db.execute("BEGIN")
        self._depth = 1
        start_seq = self.last_seq
        try:
            yield
        except BaseException:
            self._depth = 0
            db.execute("ROLLBACK")
            self.last_seq = start_seq
            raise
        self._depth = 0
        db.execute("COMMIT")
        self.committed_seq = self.last_seq

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def append(self, frame: dict[str, Any]) -> Appended:
        """Give the frame the next seq and this journal's id, store it, return its wire text.

        Raises FrameTooLarge (and stores nothing) when the text is over what a console accepts:
        a journalled frame is replayed to every console for days, so one too big would cut each
        of them off at that seq on every reconnect.
        """
        seq = self.last_seq + 1
        frame["seq"] = seq
        frame["journal"] = self.id
        text = json.dumps(frame, separators=(",", ":"))  # ASCII only: characters are bytes
        if len(text) > MAX_FRAME_BYTES:
            raise FrameTooLarge(len(text))
        self.db.execute("INSERT INTO frames(seq, at, body) VALUES (?, ?, ?)", (seq, self.clock.now(), text))
        self.last_seq = seq
        if not self._depth:
            self.committed_seq = seq
        return Appended(seq, text)

    # --- reading ------------------------------------------------------------------------

    @property
    def first_seq(self) -> int:
        """The oldest seq still kept; last_seq + 1 when nothing is kept."""
        row = self.db.execute("SELECT MIN(seq) FROM frames").fetchone()[0]
        return row if row is not None else self.committed_seq + 1

    def read_after(self, seq: int, limit: int = REPLAY_BATCH) -> list[tuple[int, str]]:
        """Up to `limit` committed frames with seq > `seq`, in order, and about REPLAY_BATCH_BYTES
        at most: each replaying connection holds one batch, so its size bounds the agent's memory."""
        cursor = self.db.execute(
            "SELECT seq, body FROM frames WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (seq, self.committed_seq, limit),
        )
        rows: list[tuple[int, str]] = []
        size = 0
        for row in cursor:
            rows.append(row)
            size += len(row[1])
            if size >= REPLAY_BATCH_BYTES:
                break
        cursor.close()
        return rows

    def replay_since(self, seq: int, batch: int = REPLAY_BATCH) -> Iterator[list[tuple[int, str]]]:
        """Every committed frame after `seq`, in batches."""
        cursor = seq
        while rows := self.read_after(cursor, batch):
            yield rows
            cursor = rows[-1][0]

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]

    # --- source state -------------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM source_state WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_state(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO source_state(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    # --- queued work items ------------------------------------------------------------------

    def queue_items(self) -> list[QueuedItem]:
        rows = self.db.execute("SELECT pos, managed, args FROM work_queue ORDER BY pos").fetchall()
        return [QueuedItem(pos, managed, json.loads(args)) for pos, managed, args in rows]

    def queue_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM work_queue").fetchone()[0]

    def queue_push(self, items: list[tuple[str, list[str]]], *, front: bool = False) -> list[QueuedItem]:
        """Store items at the back (or the front, keeping their order); returns them with their pos."""
        if not items:
            return []
        if front:
            low = self.db.execute("SELECT COALESCE(MIN(pos), 1) FROM work_queue").fetchone()[0]
            start = low - len(items)
        else:
            start = self.db.execute("SELECT COALESCE(MAX(pos), 0) FROM work_queue").fetchone()[0] + 1
        stored = [QueuedItem(start + n, managed, list(args)) for n, (managed, args) in enumerate(items)]
        with self.transaction():  # one commit for the batch
            self.db.executemany(
                "INSERT INTO work_queue(pos, managed, args) VALUES (?, ?, ?)",
                [(item.pos, item.managed, json.dumps(item.args)) for item in stored],
            )
        return stored

    def queue_remove(self, positions: list[int]) -> None:
        if positions:
            with self.transaction():
                self.db.executemany("DELETE FROM work_queue WHERE pos = ?", [(pos,) for pos in positions])

    def delete_state(self, key: str) -> None:
        self.db.execute("DELETE FROM source_state WHERE key=?", (key,))

    # --- retention ----------------------------------------------------------------------

    def prune(self) -> int:
        """Drop frames older than retention_days or beyond retention_rows; returns rows dropped."""
        if self._depth:
            return 0
        db = self.db
        cutoff_ts = self.clock.now() - self.retention_days * 86400.0
        cutoff_seq = self.committed_seq - self.retention_rows
        db.execute("BEGIN")
        # Remember the high-water mark so seq continues even if every row goes.
        db.execute(
            "INSERT INTO meta(key, value) VALUES ('last_seq', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (str(self.committed_seq),),
        )
        # Always a prefix of seq, so what a console replays has no holes in the middle.
        cur = db.execute(
            "DELETE FROM frames WHERE seq <= MAX(?, COALESCE((SELECT MAX(seq) FROM frames WHERE at < ?), 0))",
            (cutoff_seq, cutoff_ts),
        )
        db.execute("COMMIT")
        return cur.rowcount
