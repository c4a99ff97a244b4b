"""The console's database: every stored frame, cursors, metric rollups, and other parts' tables.

aiosqlite in WAL mode. The connection runs in autocommit mode; `async with store.transaction():`
groups statements atomically. Schema changes are numbered migrations per component
(`apply_migrations`), so the engines and the audit trail add their tables the same way.

Frames are stored per stream (node, journal): `(stream, seq)` is the primary key and the stream's
`last_seq` advances in the same transaction as the rows, with the node's cursor, so a replay
stores nothing twice and a crash loses nothing the agent was told is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from heady_agent.protocol import Event, Metrics

CORE = "core"

CORE_MIGRATIONS = [
    """
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        hostname TEXT NOT NULL DEFAULT '',
        info TEXT NOT NULL DEFAULT '{}',
        simulated INTEGER NOT NULL DEFAULT 0,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE TABLE streams (
        id INTEGER PRIMARY KEY,
        node TEXT NOT NULL,
        journal TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0,
        UNIQUE (node, journal)
    );
    CREATE TABLE cursors (
        node TEXT PRIMARY KEY,
        journal TEXT NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE TABLE metrics (
        stream INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts REAL NOT NULL,
        cpu REAL NOT NULL,
        mem REAL NOT NULL,
        swap REAL NOT NULL,
        load1 REAL NOT NULL,
        load5 REAL NOT NULL,
        load15 REAL NOT NULL,
        mem_available INTEGER NOT NULL,
        disk_read_bps REAL NOT NULL,
        disk_write_bps REAL NOT NULL,
        net_rx_bps REAL NOT NULL,
        net_tx_bps REAL NOT NULL,
        procs INTEGER NOT NULL,
        queue_depth INTEGER NOT NULL,
        PRIMARY KEY (stream, seq)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        stream INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        session TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (stream, seq)
    ) WITHOUT ROWID;
    CREATE INDEX events_ts ON events (ts);
    CREATE INDEX events_session ON events (session);
    CREATE TABLE metric_rollups (
        node TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        n INTEGER NOT NULL,
        cpu_sum REAL NOT NULL, cpu_max REAL NOT NULL,
        mem_sum REAL NOT NULL, mem_max REAL NOT NULL,
        load_sum REAL NOT NULL, load_max REAL NOT NULL,
        queue_sum REAL NOT NULL, queue_max REAL NOT NULL,
        PRIMARY KEY (node, bucket)
    ) WITHOUT ROWID;
    CREATE TABLE ingest_errors (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        node TEXT NOT NULL,
        code TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX ingest_errors_ts ON ingest_errors (ts);
    """,
]

_METRICS_INSERT = "INSERT OR IGNORE INTO metrics VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
_EVENTS_INSERT = "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?)"
_ROLLUP_UPSERT = """
INSERT INTO metric_rollups VALUES (?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (node, bucket) DO UPDATE SET
    n = n + excluded.n,
    cpu_sum = cpu_sum + excluded.cpu_sum, cpu_max = max(cpu_max, excluded.cpu_max),
    mem_sum = mem_sum + excluded.mem_sum, mem_max = max(mem_max, excluded.mem_max),
    load_sum = load_sum + excluded.load_sum, load_max = max(load_max, excluded.load_max),
    queue_sum = queue_sum + excluded.queue_sum, queue_max = max(queue_max, excluded.queue_max)
"""


class StoreError(Exception):
    """A database problem, as one line naming the file and what to do about it."""


@dataclass(frozen=True)
class StoredEvent:
    node: str
    journal: str
    seq: int
    ts: float
    kind: str
    session: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class NodeCount:
    node: str
    journal: str
    first_seq: int
    last_seq: int
    frames: int
    events: int
    gaps: int  # seqs between first and last that are not stored


def metrics_row(stream: int, m: Metrics) -> tuple[Any, ...]:
    return (
        stream, m.seq, m.ts, m.cpu, m.mem, m.swap, m.load[0], m.load[1], m.load[2], m.mem_available,
        m.disk_read_bps, m.disk_write_bps, m.net_rx_bps, m.net_tx_bps, m.procs, m.queue_depth,
    )  # fmt: skip


def event_row(stream: int, ev: Event) -> tuple[Any, ...]:
    return (stream, ev.seq, ev.ts, ev.kind, ev.session, json.dumps(ev.data, separators=(",", ":")))


def _explain(path: Path, exc: sqlite3.Error) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (
            f"{path}: database is locked by another process ({text}); close the other heady "
            "or give this one its own --data-dir"
        )
    corrupt = isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
    if corrupt or "malformed" in text:
        return f"{path}: database is corrupt or not a heady database ({text}); move it aside or restore a backup"
    return f"{path}: database error: {text}"


class Store:
    """`db` is the one writer connection (autocommit; `transaction()` serialises writes). Reads go
    through `read()` on a second, query-only connection: each read is its own snapshot of what is
    committed, so it never sees rows of a transaction another task has open on the writer."""

    def __init__(self, path: Path, db: aiosqlite.Connection, reader: aiosqlite.Connection, *, metric_rollup_s: int = 10) -> None:
        self.path = path
        self.db = db
        self.reader = reader
        self.metric_rollup_s = metric_rollup_s
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str, *, metric_rollup_s: int = 10, busy_timeout_s: float = 5.0) -> "Store":
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path.parent}: cannot create the data directory: {exc.strerror}") from None
        opened: list[aiosqlite.Connection] = []
        try:
            db = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout_s)
            opened.append(db)
            await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA temp_store = MEMORY")
            reader = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout_s)
            opened.append(reader)
            await reader.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            await reader.execute("PRAGMA query_only = ON")
            store = cls(path, db, reader, metric_rollup_s=metric_rollup_s)
            await store.apply_migrations(CORE, CORE_MIGRATIONS)
        except (sqlite3.Error, StoreError) as exc:
            for conn in opened:
                await conn.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(_explain(path, exc)) from None
        return store

    async def close(self) -> None:
        await self.reader.close()
        await self.db.close()

    # --- transactions and migrations --------------------------------------------------

    @asynccontextmanager
    async def transaction(self, *, durable: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); one transaction at a time.

        durable=True fsyncs this commit (synchronous=FULL; SQLite allows changing it only outside
        a transaction), for writes that must survive a power cut such as the audit chain.
        """
        async with self._lock:
            if durable:
                await self.db.execute("PRAGMA synchronous = FULL")
            try:
                try:
                    await self.db.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise StoreError(_explain(self.path, exc)) from None
                try:
                    yield self.db
                except BaseException:
                    await self._rollback()
                    raise
                try:
                    await self.db.execute("COMMIT")
                except sqlite3.Error as exc:
                    await self._rollback()
                    raise StoreError(_explain(self.path, exc)) from None
            finally:
                if durable:
                    await self.db.execute("PRAGMA synchronous = NORMAL")

    async def _rollback(self) -> None:
        """Undo what is left of a failed transaction. After some errors (disk full, I/O) SQLite has
        already rolled back, and "cannot rollback - no transaction is active" must not replace the
        error that says what went wrong."""
        if self.db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await self.db.execute("ROLLBACK")

    async def schema_version(self, component: str) -> int:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        async with self.db.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def apply_migrations(self, component: str, migrations: Sequence[str]) -> int:
        """Run the migrations this database has not seen yet, each in its own transaction.

        Migrations are append-only: entry i brings the component to version i + 1.
        Returns the resulting version.
        """
        current = await self.schema_version(component)
        if current > len(migrations):
            raise StoreError(
                f"{self.path}: schema of {component!r} is version {current}, newer than this heady knows "
                f"({len(migrations)}); upgrade heady or use another --data-dir"
            )
        for version in range(current + 1, len(migrations) + 1):
            try:
                async with self.transaction() as db:
                    for statement in _split_sql(migrations[version - 1]):
                        await db.execute(statement)
                    await db.execute(
                        "INSERT INTO schema_versions VALUES (?, ?) ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                        (component, version),
                    )
            except sqlite3.Error as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise StoreError(_explain(self.path, exc)) from None
                raise StoreError(f"{self.path}: migration {component} v{version} failed: {exc}") from None
        return len(migrations)

    # --- ingest -------------------------------------------------------------------------

    async def store_batch(self, node: str, journal: str, frames: Iterable[Metrics | Event]) -> tuple[int, int, int]:
        """Store frames of one stream; returns (stored, duplicates, max_seq).

        Rows and the cursor commit together. max_seq is the highest seq now stored for this
        stream: what the console may ack.
        """
        batch = sorted(frames, key=lambda f: f.seq)
        try:
            async with self.transaction() as db:
                return await self._store_batch_in(db, node, journal, batch)
        except sqlite3.Error as exc:
            raise StoreError(_explain(self.path, exc)) from None

    async def _store_batch_in(self, db: aiosqlite.Connection, node: str, journal: str,
                              batch: list[Metrics | Event]) -> tuple[int, int, int]:
        async with db.execute("SELECT id, last_seq FROM streams WHERE node = ? AND journal = ?", (node, journal)) as cur:
            row = await cur.fetchone()
        if row is None:
            first_ts = batch[0].ts if batch else 0.0
            async with db.execute(
                "INSERT INTO streams (node, journal, first_seen, last_seq) VALUES (?, ?, ?, 0)", (node, journal, first_ts),
            ) as cur:  # fmt: skip
                stream = cur.lastrowid
            assert stream is not None  # an INSERT into a rowid table always has one
            last = 0
        else:
            stream, last = row
        metric_rows = []
        event_rows = []
        rollups: dict[int, list[float]] = {}
        top = last
        late: list[Metrics | Event] = []
        for frame in batch:
            if frame.seq <= top:
                if frame.seq <= last:
                    late.append(frame)
                continue  # a repeat within this batch
            top = frame.seq
            if isinstance(frame, Metrics):
                metric_rows.append(metrics_row(stream, frame))
                self._roll_up(rollups, frame)
            else:
                event_rows.append(event_row(stream, frame))
        stored = 0
        if metric_rows:
            stored += (await db.executemany(_METRICS_INSERT, metric_rows)).rowcount
        if event_rows:
            stored += (await db.executemany(_EVENTS_INSERT, event_rows)).rowcount
        # At or below the stream's high-water mark: normally a replay of stored rows. One by one,
        # so a row that really was missing is stored (and rolled up) rather than dropped.
        for frame in late:
            if isinstance(frame, Metrics):
                inserted = (await db.execute(_METRICS_INSERT, metrics_row(stream, frame))).rowcount
                if inserted:
                    self._roll_up(rollups, frame)
            else:
                inserted = (await db.execute(_EVENTS_INSERT, event_row(stream, frame))).rowcount
            stored += inserted
        if rollups:
            await db.executemany(_ROLLUP_UPSERT, [(node, b, *agg) for b, agg in rollups.items()])
        if top != last:
            await db.execute("UPDATE streams SET last_seq = ? WHERE id = ?", (top, stream))
        await db.execute(
            "INSERT INTO cursors VALUES (?, ?, ?) ON CONFLICT (node) DO UPDATE SET journal = excluded.journal, seq = excluded.seq",
            (node, journal, top),
        )
        return stored, len(batch) - stored, top

    def _roll_up(self, rollups: dict[int, list[float]], m: Metrics) -> None:
        step = self.metric_rollup_s
        bucket = int(m.ts // step) * step
        load1 = m.load[0]
        agg = rollups.get(bucket)
        if agg is None:
            rollups[bucket] = [1, m.cpu, m.cpu, m.mem, m.mem, load1, load1, m.queue_depth, m.queue_depth]
            return
        agg[0] += 1
        agg[1] += m.cpu
        agg[2] = max(agg[2], m.cpu)
        agg[3] += m.mem
        agg[4] = max(agg[4], m.mem)
        agg[5] += load1
        agg[6] = max(agg[6], load1)
        agg[7] += m.queue_depth
        agg[8] = max(agg[8], m.queue_depth)

    async def record_node(self, node: str, *, hostname: str, info: dict[str, Any], simulated: bool, now: float) -> None:
        await self._write(
            """INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET
               hostname = excluded.hostname, info = excluded.info, simulated = excluded.simulated,
               last_seen = excluded.last_seen""",
            (node, hostname, json.dumps(info, separators=(",", ":")), int(simulated), now, now),
        )

    async def record_ingest_error(self, node: str, code: str, message: str, now: float) -> None:
        await self._write("INSERT INTO ingest_errors (ts, node, code, message) VALUES (?, ?, ?, ?)", (now, node, code, message))

    async def prune(self, now: float, retention_days: float) -> int:
        """Delete frames, rollups and ingest errors older than the retention; returns rows deleted."""
        cutoff = now - retention_days * 86400
        deleted = 0
        async with self.transaction() as db:
            for sql in (
                "DELETE FROM metrics WHERE ts < ?",
                "DELETE FROM events WHERE ts < ?",
                "DELETE FROM metric_rollups WHERE bucket < ?",
                "DELETE FROM ingest_errors WHERE ts < ?",
            ):
                cur = await db.execute(sql, (cutoff,))
                deleted += cur.rowcount
        return deleted

    async def _write(self, sql: str, params: Sequence[Any]) -> None:
        async with self._lock:
            try:
                await self.db.execute(sql, params)
            except sqlite3.Error as exc:
                raise StoreError(_explain(self.path, exc)) from None

    # --- queries ------------------------------------------------------------------------

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one query on the reader: committed data only (see the class doc)."""
        try:
            return list(await self.reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StoreError(_explain(self.path, exc)) from None

    async def cursor(self, node: str) -> tuple[str, int] | None:
        rows = await self.read("SELECT journal, seq FROM cursors WHERE node = ?", (node,))
        return (rows[0][0], rows[0][1]) if rows else None

    async def cursors(self) -> dict[str, tuple[str, int]]:
        return {n: (j, s) for n, j, s in await self.read("SELECT node, journal, seq FROM cursors")}

    async def nodes(self) -> list[dict[str, Any]]:
        rows = await self.read("SELECT id, hostname, info, simulated, first_seen, last_seen FROM nodes ORDER BY id")
        return [
            {"id": i, "hostname": h, "info": json.loads(info), "simulated": bool(s), "first_seen": f, "last_seen": last}
            for i, h, info, s, f, last in rows
        ]

    async def events(
        self,
        since: float | None = None,
        until: float | None = None,
        *,
        kinds: Sequence[str] | None = None,
        node: str | None = None,
        session: str | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """Events in [since, until), oldest first, optionally of some kinds / one node / one session."""
        where = []
        params: list[Any] = []
        if since is not None:
            where.append("e.ts >= ?")
            params.append(since)
        if until is not None:
            where.append("e.ts < ?")
            params.append(until)
        if kinds:
            where.append(f"e.kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
        if node is not None:
            where.append("s.node = ?")
            params.append(node)
        if session is not None:
            where.append("e.session = ?")
            params.append(session)
        sql = "SELECT s.node, s.journal, e.seq, e.ts, e.kind, e.session, e.data FROM events e JOIN streams s ON s.id = e.stream"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY e.ts, s.node, e.seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self.read(sql, params)
        return [StoredEvent(n, j, seq, ts, k, sess, json.loads(d)) for n, j, seq, ts, k, sess, d in rows]

    async def calls(self, since: float | None = None, until: float | None = None, *, node: str | None = None) -> list[StoredEvent]:
        return await self.events(since, until, kinds=("llm.call",), node=node)

    async def metrics(self, node: str, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        sql = """SELECT m.ts, m.cpu, m.mem, m.load1, m.queue_depth, m.seq FROM metrics m JOIN streams s ON s.id = m.stream
                 WHERE s.node = ? AND m.ts >= ? AND m.ts < ? ORDER BY m.ts"""
        rows = await self.read(sql, (node, since if since is not None else float("-inf"), until if until is not None else float("inf")))
        return [{"ts": t, "cpu": c, "mem": m, "load1": lo, "queue_depth": q, "seq": s} for t, c, m, lo, q, s in rows]

    async def rollups(self, since: float | None = None, until: float | None = None, *, node: str | None = None) -> list[dict[str, Any]]:
        """Metric rollups per node per `metric_rollup_s` bucket: avg and max of cpu, mem, load1, queue."""
        sql = "SELECT node, bucket, n, cpu_sum, cpu_max, mem_sum, mem_max, load_sum, load_max, queue_sum, queue_max FROM metric_rollups WHERE bucket >= ? AND bucket < ?"
        params: list[Any] = [since if since is not None else float("-inf"), until if until is not None else float("inf")]
        if node is not None:
            sql += " AND node = ?"
            params.append(node)
        sql += " ORDER BY node, bucket"
        return [
            {"node": nd, "bucket": b, "samples": n, "cpu_avg": cs / n, "cpu_max": cm, "mem_avg": ms / n, "mem_max": mm,
             "load_avg": ls / n, "load_max": lm, "queue_avg": qs / n, "queue_max": qm}  # fmt: skip
            for nd, b, n, cs, cm, ms, mm, ls, lm, qs, qm in await self.read(sql, params)
        ]

    async def node_counts(self) -> list[NodeCount]:
        """Per stream (node, journal): stored frames, events, first/last seq and gaps, newest stream last."""
        sql = """
        SELECT s.node, s.journal,
               (SELECT count(*) FROM metrics m WHERE m.stream = s.id),
               (SELECT count(*) FROM events e WHERE e.stream = s.id),
               min(coalesce((SELECT min(seq) FROM metrics m WHERE m.stream = s.id), s.last_seq),
                   coalesce((SELECT min(seq) FROM events e WHERE e.stream = s.id), s.last_seq)),
               s.last_seq
        FROM streams s ORDER BY s.node, s.id"""
        out = []
        for node, journal, n_metrics, n_events, first, last in await self.read(sql):
            frames = n_metrics + n_events
            span = last - first + 1 if frames else 0
            out.append(NodeCount(node, journal, first if frames else 0, last, frames, n_events, max(0, span - frames)))
        return out

    async def stored_seqs(self, node: str, journal: str) -> list[int]:
        """Every stored seq of one stream, ascending (metrics and events together)."""
        sql = """SELECT seq FROM metrics WHERE stream = (SELECT id FROM streams WHERE node = ? AND journal = ?)
                 UNION ALL SELECT seq FROM events WHERE stream = (SELECT id FROM streams WHERE node = ? AND journal = ?)
                 ORDER BY seq"""
        return [r[0] for r in await self.read(sql, (node, journal, node, journal))]

    async def ingest_errors(self, limit: int = 100, node: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT ts, node, code, message FROM ingest_errors"
        params: list[Any] = []
        if node is not None:
            sql += " WHERE node = ?"
            params.append(node)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [{"ts": t, "node": n, "code": c, "message": m} for t, n, c, m in await self.read(sql, params)]


def _split_sql(script: str) -> list[str]:
    """Statements of a migration script (sqlite3.complete_statement tells where each ends, triggers included)."""
    out = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n\t;"):
                out.append(pending.strip())
            pending = ""
    if pending.strip(" \n\t;"):
        out.append(pending.strip())
    return out
