"""The SHA-256 hash-chained audit trail: append, verify, and the head anchor beside the database.

Entry i is the canonical JSON (sorted keys, separators ",", ":") of {seq, ts, actor, action, details}.
Its hash is sha256(b"heady-audit-v1\\0" + prev_hash + entry) where prev_hash is the previous entry's
hash as 64 lowercase hex ASCII bytes (64 "0"s before the first entry) and entry is UTF-8.
The head (count, hash, and the time of its entry) is written to the anchor file after every append
(atomic rename + fsync), because a chain alone cannot see its tail cut off. The fsyncs run in a worker
thread (`make_durable`), so an append waits for the disk without holding the event loop.

The chain must end exactly at the anchored head. A crash between the commit of an entry and the
anchor write would leave one entry past it, so before an append commits, the anchor is rewritten
with that entry as `pending` (its head unchanged): verification accepts the anchored head or the one
pending entry, and nothing else. An entry appended behind the console's back (however correctly
chained) is therefore detected, as are a missing anchor for a non-empty chain, a chain emptied
after it had begun (the `audit_genesis` marker), and grants that no audit entry accounts for.
What a writer of both the database and the anchor can still forge is in docs/security.md; the
external anchor (`heady audit anchor --export`, `verify --against`) is the answer to it.
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
GENESIS_KEY = "audit_genesis"  # engine_kv row written with the first entry
SNAPSHOT_ATTEMPTS = 3  # reads of chain and anchor when an append lands between the two

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
class Anchor:
    """The anchor file: the durable head, the time of its entry, and the entry being committed."""

    head: Head
    at: float | None = None
    pending: Head | None = None

    @property
    def unreadable(self) -> bool:
        return self.head.count < 0


UNREADABLE = Anchor(Head(-1, "unreadable"))


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    head: Head
    anchor: Anchor | None
    first_bad: int | None  # seq of the first bad entry (or the position where the chain falls short)
    message: str


def read_anchor(path: Path) -> Anchor | None:
    try:
        raw = json.loads(path.read_text())
        pending = raw.get("pending")
        return Anchor(
            Head(int(raw["count"]), str(raw["hash"])),
            None if raw.get("at") is None else float(raw["at"]),
            None if pending is None else Head(int(pending["count"]), str(pending["hash"])),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return UNREADABLE


def write_anchor(path: Path, anchor: Anchor) -> None:
    """Atomic: temp file in the same directory, fsync, rename, fsync the directory."""
    body: dict[str, Any] = {"count": anchor.head.count, "hash": anchor.head.hash, "at": anchor.at}
    if anchor.pending is not None:
        body["pending"] = {"count": anchor.pending.count, "hash": anchor.pending.hash}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".anchor-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(canonical(body) + "\n")
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


def mark_pending(anchor_path: Path, base: Head, pending: Head) -> None:
    """Before an append commits: the anchor keeps `base` (the chain's committed head) and names the
    entry about to commit. Left alone when the anchor does not hold `base`: it is then ahead of or
    apart from the database (tail cut, anchor deleted), and rewriting it would erase that evidence.
    Blocking: run it in a thread."""
    current = read_anchor(anchor_path)
    if current is None:
        if base.count:
            return
        current = Anchor(base)
    if current.head != base:
        return
    write_anchor(anchor_path, Anchor(base, current.at, pending))


async def head(db: aiosqlite.Connection) -> Head:
    rows = list(await db.execute_fetchall("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"))
    return Head(rows[0][0], rows[0][1]) if rows else Head(0, GENESIS)


async def append_in(db: aiosqlite.Connection, *, ts: float, actor: str, action: str, details: dict[str, Any]) -> AuditEntry:
    """Append inside the caller's write transaction (BEGIN IMMEDIATE), so the head read is current."""
    last = await head(db)
    seq = last.count + 1
    if seq == 1:
        # Marks that this database has had an audit trail, so emptying it later is detected.
        await db.execute("INSERT OR IGNORE INTO engine_kv VALUES (?, ?)", (GENESIS_KEY, canonical({"at": ts})))
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


def make_durable(database: Path, anchor: Path, committed: Head, at: float) -> None:
    """fsync the commits up to `committed`, then move the anchor to it (never back: another process
    appending to the same chain may have anchored a longer one; and only from an anchor that
    `mark_pending` wrote, never over a missing one). Blocking: run it in a thread."""
    fsync_database(database)
    current = read_anchor(anchor)
    if current is not None and not current.unreadable and current.head.count < committed.count:
        write_anchor(anchor, Anchor(committed, at))


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


async def _snapshot(db: aiosqlite.Connection, anchor_path: Path) -> tuple[list[Any], Anchor | None]:
    """The chain's rows, then the anchor. Read in that order, an append in between can only move the
    anchor ahead of the rows read; that is retried rather than reported as a cut tail."""
    for _ in range(SNAPSHOT_ATTEMPTS):
        rows = list(await db.execute_fetchall("SELECT seq, ts, actor, action, entry, prev_hash, hash FROM audit ORDER BY rowid"))
        anchor = read_anchor(anchor_path)
        if anchor is None or len(rows) >= anchor.head.count:
            break
    return rows, anchor


async def _optional_rows(db: aiosqlite.Connection, sql: str) -> list[Any]:
    try:
        return list(await db.execute_fetchall(sql))
    except sqlite3.Error:
        return []  # a database without the engine's tables has no genesis marker and no grants


async def verify(db: aiosqlite.Connection, anchor_path: Path, against: Head | None = None) -> Verification:
    """Check the chain, that it ends at the anchored head (or its one pending entry), that a chain
    that began still exists, that every grant is accounted for, and (`against`) that an exported head
    is still part of it."""
    try:
        rows, anchor = await _snapshot(db, anchor_path)
    except sqlite3.Error as exc:
        return Verification(False, 0, Head(0, GENESIS), read_anchor(anchor_path), 1, f"audit table unreadable: {exc}")
    prev = GENESIS
    hashes: list[str] = []
    for position, (seq, ts, actor, action, entry, prev_hash, digest) in enumerate(rows, start=1):
        problem = _check_row(position, seq, ts, actor, action, entry, prev_hash, digest, prev)
        if problem:
            return Verification(False, len(rows), Head(len(rows), rows[-1][6]), anchor, position, f"entry {position}: {problem}")
        prev = digest
        hashes.append(digest)
    now = Head(len(rows), prev)

    def failed(first_bad: int | None, message: str) -> Verification:
        return Verification(False, len(rows), now, anchor, first_bad, message)

    genesis = await _optional_rows(db, f"SELECT value FROM engine_kv WHERE key = '{GENESIS_KEY}'")
    if anchor is None:
        if rows:
            return failed(1, f"anchor {anchor_path} is missing for a chain of {len(rows)} entries")
        if genesis:
            return failed(1, f"the audit trail begun at {json.loads(genesis[0][0]).get('at')} is empty and its anchor is missing")
    elif anchor.unreadable:
        return failed(None, f"anchor {anchor_path} is unreadable")
    else:
        if len(rows) < anchor.head.count:
            return failed(len(rows) + 1, f"entry {len(rows) + 1}: missing; the chain has {len(rows)} entries but its anchor records {anchor.head.count}")
        if anchor.head.count and hashes[anchor.head.count - 1] != anchor.head.hash:
            return failed(anchor.head.count, f"entry {anchor.head.count}: hash differs from the anchor")
        if now != anchor.head and now != anchor.pending:
            return failed(anchor.head.count + 1, f"entry {anchor.head.count + 1}: not anchored; the anchor records "
                                                  f"{anchor.head.count} entries, the chain has {len(rows)}")  # fmt: skip
    if against is not None:
        if len(rows) < against.count or (against.count and hashes[against.count - 1] != against.hash):
            return failed(min(len(rows) + 1, against.count), f"the exported head {against.count}:{against.hash[:16]} is not part of this chain")
    problem = _grants_unaccounted(await _optional_rows(db, "SELECT id, scope, grantor, expires, caps, max_uses, revoked, reason FROM grants"), rows)
    if problem:
        return failed(None, problem)
    return Verification(True, len(rows), now, anchor, None, f"ok: {len(rows)} entries, head {prev[:16]}")


def _grants_unaccounted(grants: list[Any], rows: list[Any]) -> str | None:
    """A grant row with no `consent.grant` entry saying the same, or revoked (or not) unlike the chain says."""
    granted: dict[str, dict[str, Any]] = {}
    revoked: set[str] = set()
    for _seq, _ts, _actor, action, entry, _prev, _hash in rows:
        if action not in ("consent.grant", "consent.revoke"):
            continue
        details = json.loads(entry).get("details", {})
        if action == "consent.grant":
            granted[str(details.get("grant"))] = details
        else:
            revoked.add(str(details.get("grant")))
    for gid, scope, grantor, expires, caps, max_uses, revoked_at, reason in grants:
        said = granted.get(gid)
        if said is None:
            return f"grant {gid}: no audit entry records it"
        stored = {"scope": scope, "grantor": grantor, "expires": expires, "caps": json.loads(caps), "reason": reason, "max_uses": max_uses}
        differs = [key for key, value in stored.items() if key in said and said[key] != value]
        if differs:
            return f"grant {gid}: {', '.join(differs)} differ from its audit entry"
        if (revoked_at is not None) != (gid in revoked):
            return f"grant {gid}: {'revoked' if revoked_at is not None else 'active'} unlike its audit entries say"
    return None


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
