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

from heady_agent.protocol import (
    Event,
    FrameError,
    LlmCallData,
    Metrics,
    RateLimits,
    SessionInfo,
    TestRunData,
    parse_event_data,
)

from .accounts import WINDOW_S, AccountUsage, LimitReport, window_of
from .ledger import (
    TERMINAL_STATES,
    PRIORITY_BY_OPERATOR,
    UNPRICED,
    CallPricer,
    PricedCall,
    PriorityRules,
    SessionRecord,
    TestRun,
    apply_event,
    apply_snapshot,
    day_of,
    mark_unknown,
    stored_test_run,
)

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
    # The session ledger: each llm.call priced once, as it is stored; each session's state and totals;
    # cost per UTC day, node, project and model. Kept at ingest, in the frame's transaction.
    """
    CREATE TABLE calls (
        stream INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        node TEXT NOT NULL,
        session TEXT,
        project TEXT,
        ts REAL NOT NULL,
        day TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        ok INTEGER NOT NULL,
        error TEXT,
        latency_ms REAL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_write_5m_tokens INTEGER NOT NULL,
        cache_write_1h_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        priced INTEGER NOT NULL,
        reported_cost_usd REAL,
        pricing_version TEXT NOT NULL,
        PRIMARY KEY (stream, seq)
    ) WITHOUT ROWID;
    CREATE INDEX calls_ts ON calls (ts);
    CREATE INDEX calls_session ON calls (node, session, ts);
    CREATE TABLE sessions (
        node TEXT NOT NULL,
        id TEXT NOT NULL,
        source TEXT NOT NULL,
        project TEXT,
        cwd TEXT,
        pid INTEGER,
        model TEXT,
        title TEXT,
        managed TEXT,
        nice INTEGER,
        state TEXT NOT NULL,
        reason TEXT,
        state_since REAL NOT NULL,
        started REAL,
        ended REAL,
        exit_code INTEGER,
        calls INTEGER NOT NULL,
        failed_calls INTEGER NOT NULL,
        unpriced_calls INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_write_5m_tokens INTEGER NOT NULL,
        cache_write_1h_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        reported_cost_usd REAL,
        first_activity REAL,
        last_activity REAL NOT NULL,
        last_call_at REAL,
        last_latency_ms REAL,
        PRIMARY KEY (node, id)
    ) WITHOUT ROWID;
    CREATE INDEX sessions_last_activity ON sessions (last_activity);
    CREATE TABLE cost_days (
        day TEXT NOT NULL,
        node TEXT NOT NULL,
        project TEXT NOT NULL,
        model TEXT NOT NULL,
        calls INTEGER NOT NULL,
        unpriced_calls INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        PRIMARY KEY (day, node, project, model)
    ) WITHOUT ROWID;
    """,
    # Priority classes (docs/engines.md "Priority classes"): the class each session got when it entered
    # the ledger, and whether a rule or an operator set it.
    """
    ALTER TABLE sessions ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal';
    ALTER TABLE sessions ADD COLUMN priority_by TEXT NOT NULL DEFAULT 'rule';
    """,
    # Test runs the sessions executed (test.run), with the verdict the ledger gives each.
    """
    CREATE TABLE test_runs (
        stream INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        node TEXT NOT NULL,
        session TEXT NOT NULL,
        ts REAL NOT NULL,
        runner TEXT NOT NULL,
        command TEXT NOT NULL,
        exit_code INTEGER NOT NULL,
        passed INTEGER,
        failed INTEGER,
        ok INTEGER NOT NULL,
        PRIMARY KEY (stream, seq)
    ) WITHOUT ROWID;
    CREATE INDEX test_runs_ts ON test_runs (ts);
    CREATE INDEX test_runs_session ON test_runs (node, session, ts);
    """,
    # How often each session's context was compacted, counted from the events already stored.
    """
    ALTER TABLE sessions ADD COLUMN compactions INTEGER NOT NULL DEFAULT 0;
    UPDATE sessions SET compactions = (
        SELECT count(*) FROM events e JOIN streams s ON s.id = e.stream
        WHERE s.node = sessions.node AND e.session = sessions.id AND e.kind = 'session.state'
        AND json_extract(e.data, '$.state') = 'compacted'
    ) WHERE id IN (SELECT session FROM events WHERE kind = 'session.state' AND json_extract(data, '$.state') = 'compacted');
    """,
]

# Account limits (heady_tui.accounts), a component of its own so its versions never collide with
# the core's: each session's account, and every limit report a client made, as received.
ACCOUNTS = "accounts"
ACCOUNTS_MIGRATIONS = [
    """
    ALTER TABLE sessions ADD COLUMN account TEXT;
    ALTER TABLE sessions ADD COLUMN plan TEXT;
    CREATE INDEX sessions_account ON sessions (account);
    CREATE TABLE limit_reports (
        account TEXT NOT NULL,
        window TEXT NOT NULL,
        ts REAL NOT NULL,
        node TEXT NOT NULL,
        session TEXT,
        used_percent REAL NOT NULL,
        window_minutes INTEGER,
        resets_at REAL
    );
    CREATE INDEX limit_reports_ts ON limit_reports (ts);
    """,
]
_LIMIT_INSERT = "INSERT INTO limit_reports (account, window, ts, node, session, used_percent, window_minutes, resets_at) VALUES (?,?,?,?,?,?,?,?)"

# SessionRecord attribute per `sessions` column, in column order.
SESSION_FIELDS = (
    ("node", "node"), ("id", "id"), ("source", "source"), ("project", "project"), ("cwd", "cwd"), ("pid", "pid"),
    ("model", "model"), ("title", "title"), ("managed", "managed"), ("nice", "nice"), ("state", "state"),
    ("reason", "state_reason"), ("state_since", "state_since"), ("started", "started"), ("ended", "ended"),
    ("exit_code", "exit_code"), ("calls", "calls"), ("failed_calls", "failed_calls"), ("unpriced_calls", "unpriced_calls"),
    ("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"), ("cache_write_5m_tokens", "cache_write_5m_tokens"),
    ("cache_write_1h_tokens", "cache_write_1h_tokens"), ("cache_read_tokens", "cache_read_tokens"),
    ("reasoning_tokens", "reasoning_tokens"), ("cost_usd", "cost_usd"), ("reported_cost_usd", "reported_cost_usd"),
    ("first_activity", "first_activity"), ("last_activity", "last_event_at"), ("last_call_at", "last_call_at"),
    ("last_latency_ms", "last_latency_ms"), ("priority", "priority"), ("priority_by", "priority_by"),
    ("account", "account"), ("plan", "plan"), ("compactions", "compactions"),
)  # fmt: skip
_SESSION_SELECT = "SELECT " + ", ".join(c for c, _ in SESSION_FIELDS) + " FROM sessions"
_SESSION_UPSERT = f"INSERT OR REPLACE INTO sessions ({', '.join(c for c, _ in SESSION_FIELDS)}) VALUES ({','.join('?' * len(SESSION_FIELDS))})"
_CALL_COLUMNS = (
    "node, session, project, ts, provider, model, ok, error, latency_ms, input_tokens, output_tokens, cache_write_5m_tokens, "
    "cache_write_1h_tokens, cache_read_tokens, reasoning_tokens, cost_usd, priced, reported_cost_usd, pricing_version"
)
_CALL_INSERT = f"INSERT OR IGNORE INTO calls (stream, seq, day, {_CALL_COLUMNS}) VALUES ({','.join('?' * 22)})"
_COST_DAY_UPSERT = """
INSERT INTO cost_days (day, node, project, model, calls, unpriced_calls, cost_usd) VALUES (?,?,?,?,?,?,?)
ON CONFLICT (day, node, project, model) DO UPDATE SET
    calls = calls + excluded.calls, unpriced_calls = unpriced_calls + excluded.unpriced_calls,
    cost_usd = cost_usd + excluded.cost_usd
"""

_TEST_RUN_COLUMNS = "node, session, ts, runner, command, exit_code, passed, failed, ok"
_TEST_RUN_INSERT = f"INSERT OR IGNORE INTO test_runs (stream, seq, {_TEST_RUN_COLUMNS}) VALUES ({','.join('?' * 11)})"
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


@dataclass
class IngestResult:
    """What one stored batch changed: the fleet and the brain take it as is."""

    stored: int
    duplicates: int
    top: int  # the highest seq now stored for the stream: what the console may ack
    sessions: list[SessionRecord]  # the ledger rows this batch changed, as committed
    calls: list[PricedCall]  # the calls this batch stored, priced
    test_runs: list[TestRun]  # the test runs this batch stored
    bad_events: int  # events stored whose data did not validate: in no session


@dataclass(frozen=True)
class RepriceResult:
    calls: int  # calls looked at
    changed: int  # calls whose cost changed
    old_total_usd: float
    new_total_usd: float
    pricing_version: str


@dataclass(frozen=True)
class CostDay:
    day: str
    node: str
    project: str | None
    model: str
    calls: int
    unpriced_calls: int
    cost_usd: float


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


def _session_row(rec: SessionRecord) -> tuple[Any, ...]:
    return tuple(getattr(rec, attr) for _, attr in SESSION_FIELDS)


def _session_from_row(row: Sequence[Any]) -> SessionRecord:
    return SessionRecord(**{attr: value for (_, attr), value in zip(SESSION_FIELDS, row)})


def _call_from_row(journal: str, seq: int, row: Sequence[Any]) -> PricedCall:
    (node, session, project, ts, provider, model, ok, error, latency, inp, out, w5, w1, cr, reasoning, cost, priced,
     reported, version) = row  # fmt: skip
    return PricedCall(node, journal, seq, session, project, ts, provider, model, bool(ok), error, latency, inp, out, w5, w1, cr,
                      reasoning, cost, bool(priced), reported, version)  # fmt: skip


class Store:
    """`db` is the one writer connection (autocommit; `transaction()` serialises writes). Reads go
    through `read()` on a second, query-only connection: each read is its own snapshot of what is
    committed, so it never sees rows of a transaction another task has open on the writer."""

    def __init__(
        self, path: Path, db: aiosqlite.Connection, reader: aiosqlite.Connection, *, metric_rollup_s: int = 10,
        pricing: CallPricer | None = None, priority: PriorityRules | None = None,
    ) -> None:  # fmt: skip
        self.path = path
        self.db = db
        # Prices each llm.call as it is stored. The console passes its configured table; a store
        # opened only to read (the CLI, reports) has none, and what it would ingest stays unpriced.
        self.pricing: CallPricer = pricing or UNPRICED
        # Gives each session its priority class as it enters the ledger (the console's rules; none: normal).
        self.priority = priority or PriorityRules()
        self.reader = reader
        self.metric_rollup_s = metric_rollup_s
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, path: Path | str, *, metric_rollup_s: int = 10, busy_timeout_s: float = 5.0, pricing: CallPricer | None = None,
        priority: PriorityRules | None = None,
    ) -> "Store":
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
            store = cls(path, db, reader, metric_rollup_s=metric_rollup_s, pricing=pricing, priority=priority)
            await store.apply_migrations(CORE, CORE_MIGRATIONS)
            await store.apply_migrations(ACCOUNTS, ACCOUNTS_MIGRATIONS)
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
        """Store frames of one stream; returns (stored, duplicates, max_seq) (see `ingest`)."""
        result = await self.ingest(node, journal, frames)
        return result.stored, result.duplicates, result.top

    async def ingest(self, node: str, journal: str, frames: Iterable[Metrics | Event]) -> IngestResult:
        """Store frames of one stream with what they change in the session ledger.

        Rows, the ledger and the cursor commit together. `top` is the highest seq now stored for
        this stream: what the console may ack.
        """
        batch = sorted(frames, key=lambda f: f.seq)
        try:
            async with self.transaction() as db:
                return await self._store_batch_in(db, node, journal, batch)
        except sqlite3.Error as exc:
            raise StoreError(_explain(self.path, exc)) from None

    async def _store_batch_in(self, db: aiosqlite.Connection, node: str, journal: str, batch: list[Metrics | Event]) -> IngestResult:
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
        new_events: list[Event] = []
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
                new_events.append(frame)
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
                if inserted:
                    new_events.append(frame)
            stored += inserted
        if rollups:
            await db.executemany(_ROLLUP_UPSERT, [(node, b, *agg) for b, agg in rollups.items()])
        if top != last:
            await db.execute("UPDATE streams SET last_seq = ? WHERE id = ?", (top, stream))
        await db.execute(
            "INSERT INTO cursors VALUES (?, ?, ?) ON CONFLICT (node) DO UPDATE SET journal = excluded.journal, seq = excluded.seq",
            (node, journal, top),
        )
        new_events.sort(key=lambda ev: ev.seq)
        result = await self._ledger_in(db, node, journal, stream, new_events)
        # Events another console sharing this database stored first: their sessions' rows as that
        # console left them, so this console's fleet shows the same ledger.
        if stored < len(batch):  # only a batch with repeats pays for this
            changed = {rec.id for rec in result.sessions}
            repeated = {f.session for f in batch if isinstance(f, Event) and f.session is not None and f.kind != "agent.notice"} - changed
            if repeated:
                result.sessions += (await self._load_sessions_in(db, node, repeated)).values()
        result.stored, result.duplicates, result.top = stored, len(batch) - stored, top
        return result

    @staticmethod
    async def _load_sessions_in(db: aiosqlite.Connection, node: str, ids: Iterable[str], where: str = "") -> dict[str, SessionRecord]:
        """Ledger rows of one node: those named, and those matching `where` (SQL, no parameters)."""
        out: dict[str, SessionRecord] = {}
        if where:
            for row in await db.execute_fetchall(f"{_SESSION_SELECT} WHERE node = ? AND {where}", (node,)):
                rec = _session_from_row(row)
                out[rec.id] = rec
        wanted = sorted(set(ids) - set(out))
        for start in range(0, len(wanted), 500):  # below SQLite's bound-parameter limit
            chunk = wanted[start : start + 500]
            sql = f"{_SESSION_SELECT} WHERE node = ? AND id IN ({','.join('?' * len(chunk))})"
            for row in await db.execute_fetchall(sql, (node, *chunk)):
                rec = _session_from_row(row)
                out[rec.id] = rec
        return out

    async def _ledger_in(self, db: aiosqlite.Connection, node: str, journal: str, stream: int, events: list[Event]) -> IngestResult:
        """Apply newly stored events to the session ledger: validate, price calls, update sessions and daily costs."""
        result = IngestResult(0, 0, 0, [], [], [], 0)
        ids = [ev.session for ev in events if ev.session is not None and ev.kind != "agent.notice"]
        if not ids:
            return result
        sessions = await self._load_sessions_in(db, node, ids)
        changed: dict[str, SessionRecord] = {}
        days: dict[tuple[str, str, str], list[float]] = {}
        call_rows = []
        limit_rows: list[tuple[Any, ...]] = []
        test_rows = []
        for ev in events:
            if ev.session is None or ev.kind == "agent.notice":
                continue
            try:
                data = parse_event_data(ev.kind, ev.data)
            except FrameError:
                result.bad_events += 1  # stored as received, counted, and in no session
                continue
            if isinstance(data, RateLimits):  # the account's, not the session's: its row stays as it is
                known = sessions.get(ev.session)
                limit_rows += _limit_rows(data, known.account if known else None, node, ev.session, ev.ts)
                continue
            rec = sessions.get(ev.session)
            if rec is None:
                rec = sessions[ev.session] = SessionRecord(node=node, id=ev.session)
            changed[rec.id] = rec
            call = apply_event(rec, data, pricing=self.pricing, node=node, journal=journal, seq=ev.seq, ts=ev.ts)
            if call is not None:
                result.calls.append(call)
                if isinstance(data, LlmCallData) and data.rate_limits is not None:
                    limit_rows += _limit_rows(data.rate_limits, rec.account, node, ev.session, ev.ts)
                day = day_of(call.ts)
                call_rows.append((stream, call.seq, day, *_call_values(call)))
                agg = days.setdefault((day, call.project or "", call.model), [0, 0, 0.0])
                agg[0] += 1
                agg[1] += 0 if call.priced else 1
                agg[2] += call.cost_usd
            if isinstance(data, TestRunData):
                run = stored_test_run(data, node=node, journal=journal, seq=ev.seq, session=ev.session, ts=ev.ts)
                result.test_runs.append(run)
                test_rows.append((stream, run.seq, *_test_run_values(run)))
        for rec in changed.values():
            self.priority.classify(rec)
        if test_rows:
            await db.executemany(_TEST_RUN_INSERT, test_rows)
        if call_rows:
            await db.executemany(_CALL_INSERT, call_rows)
            await db.executemany(_COST_DAY_UPSERT, [(day, node, project, model, *agg) for (day, project, model), agg in days.items()])
        if limit_rows:
            await db.executemany(_LIMIT_INSERT, limit_rows)
        await db.executemany(_SESSION_UPSERT, [_session_row(rec) for rec in changed.values()])
        result.sessions = list(changed.values())
        return result

    async def apply_sessions(self, node: str, infos: Sequence[SessionInfo], now: float) -> list[SessionRecord]:
        """The agent's list of its current sessions into the ledger (one transaction); returns the rows changed."""
        live = f"ended IS NULL AND state NOT IN ({', '.join(repr(s) for s in TERMINAL_STATES)})"
        try:
            async with self.transaction() as db:
                node_sessions = await self._load_sessions_in(db, node, [info.id for info in infos], where=live)
                changed = apply_snapshot(node_sessions, node, infos, now)
                for rec in changed:
                    self.priority.classify(rec)
                await db.executemany(_SESSION_UPSERT, [_session_row(rec) for rec in changed])
        except sqlite3.Error as exc:
            raise StoreError(_explain(self.path, exc)) from None
        return changed

    async def sessions_unknown(self, node: str, now: float) -> list[SessionRecord]:
        """A silent node's live sessions become `unknown (node offline)` in the ledger; returns the rows changed."""
        live = f"ended IS NULL AND state NOT IN ({', '.join(repr(s) for s in TERMINAL_STATES)})"
        try:
            async with self.transaction() as db:
                changed = mark_unknown((await self._load_sessions_in(db, node, [], where=live)).values(), now)
                await db.executemany(_SESSION_UPSERT, [_session_row(rec) for rec in changed])
        except sqlite3.Error as exc:
            raise StoreError(_explain(self.path, exc)) from None
        return changed

    async def set_priority(self, node: str, session_id: str, priority: str) -> SessionRecord | None:
        """An operator's class for a session: kept over the rules from now on. None: no such session."""
        try:
            async with self.transaction() as db:
                rec = (await self._load_sessions_in(db, node, [session_id])).get(session_id)
                if rec is None:
                    return None
                rec.priority, rec.priority_by = priority, PRIORITY_BY_OPERATOR
                await db.execute(_SESSION_UPSERT, _session_row(rec))
        except sqlite3.Error as exc:
            raise StoreError(_explain(self.path, exc)) from None
        return rec

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
                "DELETE FROM calls WHERE ts < ?",
                "DELETE FROM limit_reports WHERE ts < ?",
                "DELETE FROM test_runs WHERE ts < ?",
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

    # --- the session ledger ---------------------------------------------------------------

    async def sessions(
        self, *, node: str | None = None, active_since: float | None = None, until: float | None = None, or_live: bool = False
    ) -> list[SessionRecord]:
        """Ledger rows, oldest activity first: of one node, with activity in [active_since, until),
        and with `or_live` every session not over whenever it was last active."""
        where: list[str] = []
        params: list[Any] = []
        if node is not None:
            where.append("node = ?")
            params.append(node)
        if active_since is not None:
            live = f" OR (ended IS NULL AND state NOT IN ({','.join('?' * len(TERMINAL_STATES))}))" if or_live else ""
            where.append(f"(last_activity >= ?{live})")
            params.append(active_since)
            if or_live:
                params.extend(TERMINAL_STATES)
        if until is not None:
            where.append("coalesce(first_activity, last_activity) < ?")
            params.append(until)
        sql = _SESSION_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY last_activity, node, id"
        return [_session_from_row(row) for row in await self.read(sql, params)]

    async def session(self, node: str, session_id: str) -> SessionRecord | None:
        rows = await self.read(f"{_SESSION_SELECT} WHERE node = ? AND id = ?", (node, session_id))
        return _session_from_row(rows[0]) if rows else None

    async def priced_calls(
        self, since: float | None = None, until: float | None = None, *, node: str | None = None, session: str | None = None
    ) -> list[PricedCall]:
        """Stored calls in [since, until) with their stored prices, oldest first."""
        where, params = _range_filter("c", since, until, node, session)
        columns = ", ".join(f"c.{c.strip()}" for c in _CALL_COLUMNS.split(","))
        sql = f"SELECT s.journal, c.seq, {columns} FROM calls c JOIN streams s ON s.id = c.stream WHERE {' AND '.join(where)} ORDER BY c.ts, c.node, c.seq"
        return [_call_from_row(row[0], row[1], row[2:]) for row in await self.read(sql, params)]

    async def test_runs(
        self, since: float | None = None, until: float | None = None, *, node: str | None = None, session: str | None = None
    ) -> list[TestRun]:
        """Stored test runs in [since, until), oldest first."""
        where, params = _range_filter("t", since, until, node, session)
        columns = ", ".join(f"t.{c.strip()}" for c in _TEST_RUN_COLUMNS.split(","))
        sql = (f"SELECT s.journal, t.seq, {columns} FROM test_runs t JOIN streams s ON s.id = t.stream "
               f"WHERE {' AND '.join(where)} ORDER BY t.ts, t.node, t.seq")
        return [TestRun(n, journal, seq, sess, ts, runner, command, code, passed, failed, bool(ok))
                for journal, seq, n, sess, ts, runner, command, code, passed, failed, ok in await self.read(sql, params)]

    async def cost_days(self, since_day: str = "", until_day: str = "\uffff") -> list[CostDay]:
        """Daily cost rollups (UTC days) in [since_day, until_day)."""
        sql = "SELECT day, node, project, model, calls, unpriced_calls, cost_usd FROM cost_days WHERE day >= ? AND day < ? ORDER BY day, node, project, model"
        return [CostDay(d, n, p or None, m, c, u, usd) for d, n, p, m, c, u, usd in await self.read(sql, (since_day, until_day))]

    # --- account limits ---------------------------------------------------------------------

    async def limit_reports(self, since: float) -> list[LimitReport]:
        """Limit reports received since `since`, oldest first."""
        sql = """SELECT account, window, ts, node, session, used_percent, window_minutes, resets_at FROM limit_reports
                 WHERE ts >= ? ORDER BY ts"""
        return [LimitReport(*row) for row in await self.read(sql, (since,))]

    async def account_usage(self, now: float, burn_window_s: float) -> list[AccountUsage]:
        """Per account and window, the fleet's stored spend in the window ending now (calls of
        sessions attributed to an account), its spend in the burn window, nodes and sessions."""
        out = []
        for window, length in WINDOW_S.items():
            # Calls summed per session first, then joined to their sessions' accounts (a join per session, not per call).
            sql = """SELECT s.account, c.node, sum(c.cost), sum(c.recent), min(c.first), count(*), max(s.plan)
                     FROM (SELECT node, session, sum(cost_usd) AS cost, sum(CASE WHEN ts >= ? THEN cost_usd ELSE 0 END) AS recent,
                                  min(ts) AS first
                           FROM calls WHERE ts >= ? AND ts <= ? AND session IS NOT NULL GROUP BY node, session) c
                     JOIN sessions s ON s.node = c.node AND s.id = c.session
                     WHERE s.account IS NOT NULL GROUP BY s.account, c.node ORDER BY s.account, c.node"""
            per_account: dict[str, list[Any]] = {}
            for account, node, cost, recent, first, sessions, plan in await self.read(sql, (now - burn_window_s, now - length, now)):
                agg = per_account.setdefault(account, [0.0, 0.0, None, [], 0, None])
                agg[0] += cost or 0.0
                agg[1] += recent or 0.0
                agg[2] = first if agg[2] is None else min(agg[2], first)
                agg[3].append(node)
                agg[4] += sessions
                agg[5] = agg[5] or plan
            out += [AccountUsage(account, window, cost, recent, first, tuple(nodes), sessions, plan)
                    for account, (cost, recent, first, nodes, sessions, plan) in per_account.items()]
        return out

    async def ingest_errors(self, limit: int = 100, node: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT ts, node, code, message FROM ingest_errors"
        params: list[Any] = []
        if node is not None:
            sql += " WHERE node = ?"
            params.append(node)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [{"ts": t, "node": n, "code": c, "message": m} for t, n, c, m in await self.read(sql, params)]


def _range_filter(alias: str, since: float | None, until: float | None, node: str | None,
                  session: str | None) -> tuple[list[str], list[Any]]:
    """WHERE terms and parameters of a per-call table read: a time range, optionally one node or session."""
    where = [f"{alias}.ts >= ?", f"{alias}.ts < ?"]
    params: list[Any] = [since if since is not None else float("-inf"), until if until is not None else float("inf")]
    for column, value in (("node", node), ("session", session)):
        if value is not None:
            where.append(f"{alias}.{column} = ?")
            params.append(value)
    return where, params


def _limit_rows(limits: RateLimits, account: str | None, node: str, session: str, ts: float) -> list[tuple[Any, ...]]:
    """`limit_reports` rows of a client's report; none for a session not attributed to an account."""
    if account is None:
        return []
    rows = []
    for slot, window in (("primary", limits.primary), ("secondary", limits.secondary)):
        if window is not None:
            rows.append((account, window_of(slot, window.window_minutes), ts, node, session, window.used_percent,
                         window.window_minutes, window.resets_at))  # fmt: skip
    return rows


def _test_run_values(run: TestRun) -> tuple[Any, ...]:
    """A test run's values in _TEST_RUN_COLUMNS order."""
    return (run.node, run.session, run.ts, run.runner, run.command, run.exit_code, run.passed, run.failed, int(run.ok))


def _call_values(call: PricedCall) -> tuple[Any, ...]:
    """A call's values in _CALL_COLUMNS order."""
    return (
        call.node, call.session, call.project, call.ts, call.provider, call.model, int(call.ok), call.error, call.latency_ms,
        call.input_tokens, call.output_tokens, call.cache_write_5m_tokens, call.cache_write_1h_tokens, call.cache_read_tokens,
        call.reasoning_tokens, call.cost_usd, int(call.priced), call.reported_cost_usd, call.pricing_version,
    )  # fmt: skip


async def reprice_in(db: aiosqlite.Connection, pricing: CallPricer, since: float | None) -> RepriceResult:
    """Price the stored calls since `since` again with `pricing`, inside the caller's transaction:
    each call's cost and table version, its session's totals and the daily rollups move together."""
    sql = """SELECT c.stream, c.seq, c.node, c.session, c.project, c.ts, c.day, c.model, c.cost_usd, c.priced, e.data
             FROM calls c JOIN events e ON e.stream = c.stream AND e.seq = c.seq WHERE c.ts >= ?"""
    rows = await db.execute_fetchall(sql, (since if since is not None else float("-inf"),))
    old_total = new_total = 0.0
    changed = 0
    sessions: dict[tuple[str, str], list[float]] = {}
    days: dict[tuple[str, str, str, str], list[float]] = {}
    updates = []
    for stream, seq, node, session, project, _ts, day, model, old_cost, old_priced, data in rows:
        try:
            call = LlmCallData.model_validate_json(data)
        except ValueError:
            continue  # stored calls were validated at ingest; a row that no longer is keeps its price
        cost, priced = pricing.cost(call)
        old_total += old_cost
        new_total += cost
        updates.append((cost, int(priced), pricing.version, stream, seq))
        if cost == old_cost and priced == bool(old_priced):
            continue
        changed += 1
        unpriced_delta = int(not priced) - int(not old_priced)
        if session is not None:
            agg = sessions.setdefault((node, session), [0.0, 0])
            agg[0] += cost - old_cost
            agg[1] += unpriced_delta
        dagg = days.setdefault((day, node, project or "", model), [0.0, 0])
        dagg[0] += cost - old_cost
        dagg[1] += unpriced_delta
    await db.executemany("UPDATE calls SET cost_usd = ?, priced = ?, pricing_version = ? WHERE stream = ? AND seq = ?", updates)
    await db.executemany(
        "UPDATE sessions SET cost_usd = cost_usd + ?, unpriced_calls = unpriced_calls + ? WHERE node = ? AND id = ?",
        [(usd, n, node, session) for (node, session), (usd, n) in sessions.items()],
    )
    await db.executemany(
        "UPDATE cost_days SET cost_usd = cost_usd + ?, unpriced_calls = unpriced_calls + ? WHERE day = ? AND node = ? AND project = ? AND model = ?",
        [(usd, n, *key) for key, (usd, n) in days.items()],
    )
    return RepriceResult(len(updates), changed, old_total, new_total, pricing.version)


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
