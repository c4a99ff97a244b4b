"""The SHA-256 hash-chained audit trail: append, verify, and the head anchor beside the database.

Entry i is the canonical JSON (sorted keys, separators ",", ":") of {seq, ts, actor, action, details}.
Its hash is sha256(b"heady-audit-v1\\0" + prev_hash + entry) where prev_hash is the previous entry's
hash as 64 lowercase hex ASCII bytes (64 "0"s before the first entry) and entry is UTF-8.
The head (count, hash) is written to the anchor file after every append (atomic rename + fsync),
because a chain alone cannot see its tail cut off. The fsyncs run in a worker thread (`make_durable`),
so an append waits for the disk without holding the event loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

DOMAIN = b"heady-audit-v1\0"
GENESIS = "0" * 64

MIGRATION = """
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    entry TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(prev_hash: str, entry: str) -> str:
    return hashlib.sha256(DOMAIN + prev_hash.encode("ascii") + entry.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: float
    actor: str
    action: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "actor": self.actor, "action": self.action,
                "details": self.details, "prev_hash": self.prev_hash, "hash": self.hash}


@dataclass(frozen=True)
class Head:
    count: int
    hash: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    head: Head
    anchor: Head | None
    first_bad: int | None  # seq of the first bad entry (or the position where the chain falls short)
    message: str


def read_anchor(path: Path) -> Head | None:
    try:
        raw = json.loads(path.read_text())
        return Head(int(raw["count"]), str(raw["hash"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Head(-1, "unreadable")


def write_anchor(path: Path, head: Head) -> None:
    """Atomic: temp file in the same directory, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".anchor-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(canonical({"count": head.count, "hash": head.hash}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


async def head(db: aiosqlite.Connection) -> Head:
    rows = list(await db.execute_fetchall("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"))
    return Head(rows[0][0], rows[0][1]) if rows else Head(0, GENESIS)


async def append_in(db: aiosqlite.Connection, *, ts: float, actor: str, action: str, details: dict[str, Any]) -> AuditEntry:
    """Append inside the caller's write transaction (BEGIN IMMEDIATE), so the head read is current."""
    last = await head(db)
    seq = last.count + 1
    entry = canonical({"seq": seq, "ts": ts, "actor": actor, "action": action, "details": details})
    digest = chain_hash(last.hash, entry)
    await db.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?)", (seq, ts, actor, action, entry, last.hash, digest))
    return AuditEntry(seq, ts, actor, action, json.loads(canonical(details)), last.hash, digest)


def fsync_database(database: Path) -> None:
    """Make the committed audit entry durable: fsync the WAL (the store runs synchronous=NORMAL)."""
    for path in (database.with_name(database.name + "-wal"), database):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return


def make_durable(database: Path, anchor: Path, committed: Head) -> None:
    """fsync the commits up to `committed`, then move the anchor to it (never back: another process
    appending to the same chain may have anchored a longer one). Blocking: run it in a thread."""
    fsync_database(database)
    current = read_anchor(anchor)
    if current is None or current.count < committed.count:
        write_anchor(anchor, committed)


async def entries(db: aiosqlite.Connection, limit: int | None = None) -> list[AuditEntry]:
    """Newest `limit` entries (all when None), oldest first."""
    sql = "SELECT seq, ts, actor, action, entry, prev_hash, hash FROM audit ORDER BY seq DESC"
    params: tuple[Any, ...] = ()
    if limit is not None:
        sql += " LIMIT ?"
        params = (limit,)
    rows = list(await db.execute_fetchall(sql, params))
    out = []
    for seq, ts, actor, action, entry, prev, digest in reversed(rows):
        try:
            details = json.loads(entry).get("details", {})
        except ValueError:
            details = {"unreadable": entry}
        out.append(AuditEntry(seq, ts, actor, action, details, prev, digest))
    return out


async def verify(db: aiosqlite.Connection, anchor_path: Path) -> Verification:
    try:
        rows = list(await db.execute_fetchall("SELECT seq, ts, actor, action, entry, prev_hash, hash FROM audit ORDER BY rowid"))
    except sqlite3.Error as exc:
        return Verification(False, 0, Head(0, GENESIS), read_anchor(anchor_path), 1, f"audit table unreadable: {exc}")
    anchor = read_anchor(anchor_path)
    prev = GENESIS
    hashes: list[str] = []
    for position, (seq, ts, actor, action, entry, prev_hash, digest) in enumerate(rows, start=1):
        problem = _check_row(position, seq, ts, actor, action, entry, prev_hash, digest, prev)
        if problem:
            return Verification(False, len(rows), Head(len(rows), rows[-1][6]), anchor, position, f"entry {position}: {problem}")
        prev = digest
        hashes.append(digest)
    now = Head(len(rows), prev)
    if anchor is not None:
        if anchor.count < 0:
            return Verification(False, len(rows), now, anchor, None, f"anchor {anchor_path} is unreadable")
        if len(rows) < anchor.count:
            return Verification(False, len(rows), now, anchor, len(rows) + 1,
                                f"entry {len(rows) + 1}: missing; the chain has {len(rows)} entries but its anchor records {anchor.count}")
        if anchor.count and hashes[anchor.count - 1] != anchor.hash:
            return Verification(False, len(rows), now, anchor, anchor.count, f"entry {anchor.count}: hash differs from the anchor")
    return Verification(True, len(rows), now, anchor, None, f"ok: {len(rows)} entries, head {prev[:16]}")


def _check_row(position: int, seq: Any, ts: Any, actor: Any, action: Any, entry: Any, prev_hash: Any, digest: Any, prev: str) -> str | None:
    if seq != position:
        return f"out of order or removed (seq {seq} at position {position})"
    if prev_hash != prev:
        return "previous-hash link broken"
    if not isinstance(entry, str) or chain_hash(prev, entry) != digest:
        return "content changed (hash mismatch)"
    try:
        body = json.loads(entry)
    except ValueError:
        return "entry is not JSON"
    if canonical(body) != entry:
        return "entry is not canonical JSON"
    if (body.get("seq"), body.get("ts"), body.get("actor"), body.get("action")) != (seq, ts, actor, action):
        return "columns differ from the hashed entry"
    return None
