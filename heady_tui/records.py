"""Persistence of engine state through the Store (component "engine"): consent, rebalance runs and
their applied changes, policy state and actions, detector timers and level changes, healing,
deploy notices, budget notices, and the audit chain (heady_tui.audit).

Every write that changes a decision goes through `Records.write(...)`, one transaction that also
appends its audit entry, so a decision and its audit record commit together. Queries by time range
are for the report (see docs/engines.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from heady_tui import audit
from heady_tui.accounts import AccountWindow, window_from_dict
from heady_tui.audit import AuditEntry, Head, Verification
from heady_tui.engine.consent import ConsentError, ConsentRequest, Denial, Grant
from heady_tui.engine.detector import LevelChange, MetricLevelChange
from heady_tui.engine.policies import PolicyState
from heady_tui.store import Store

COMPONENT = "engine"
ACCOUNT_WINDOWS = "account_windows"  # engine_kv key: the brain's latest AccountWindow list
MIGRATIONS = [
    audit.MIGRATION
    + """
CREATE TABLE grants (
    id TEXT PRIMARY KEY, scope TEXT NOT NULL, grantor TEXT NOT NULL, created REAL NOT NULL,
    expires REAL, caps TEXT NOT NULL, uses INTEGER NOT NULL DEFAULT 0, max_uses INTEGER,
    revoked REAL, reason TEXT NOT NULL, fingerprint TEXT
);
CREATE TABLE denials (
    id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, grantor TEXT NOT NULL, at REAL NOT NULL,
    snooze_until REAL NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE consent_requests (
    id TEXT PRIMARY KEY, created REAL NOT NULL, expires REAL NOT NULL, reason TEXT NOT NULL,
    fingerprint TEXT NOT NULL, plan TEXT NOT NULL, state TEXT NOT NULL, decided_at REAL,
    decision TEXT, grant_id TEXT
);
CREATE TABLE rebalance_runs (
    id TEXT PRIMARY KEY, grant_id TEXT, priority TEXT NOT NULL, started REAL NOT NULL, stopped REAL,
    reason_stopped TEXT, restored INTEGER, time_to_restore_s REAL, plan TEXT NOT NULL, steps TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE rebalance_changes (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, node TEXT NOT NULL, action TEXT NOT NULL, target TEXT,
    args TEXT NOT NULL, revert_action TEXT, revert_args TEXT NOT NULL DEFAULT '{}',
    applied INTEGER NOT NULL DEFAULT 0, reverted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE policy_state (
    node TEXT NOT NULL, session TEXT NOT NULL, policy TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (node, session, policy)
);
CREATE TABLE policy_actions (
    at REAL NOT NULL, policy TEXT NOT NULL, node TEXT NOT NULL, session TEXT NOT NULL,
    action TEXT NOT NULL, attempt INTEGER NOT NULL, outcome TEXT NOT NULL
);
CREATE TABLE engine_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE level_changes (at REAL NOT NULL, level TEXT NOT NULL, previous TEXT NOT NULL, metrics TEXT NOT NULL);
CREATE TABLE healing_cycles (id TEXT PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE weak_points (id TEXT PRIMARY KEY, opened REAL NOT NULL, closed REAL, body TEXT NOT NULL);
CREATE TABLE tasks (id TEXT PRIMARY KEY, created REAL NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE deploy_notices (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, node TEXT, source TEXT NOT NULL, seen INTEGER NOT NULL DEFAULT 0);
CREATE TABLE budget_notices (budget TEXT NOT NULL, period TEXT NOT NULL, percent INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (budget, period, percent));
CREATE INDEX level_changes_at ON level_changes (at);
CREATE INDEX policy_actions_at ON policy_actions (at);
CREATE INDEX healing_cycles_at ON healing_cycles (at);
""",
    """
CREATE TABLE metric_level_changes (at REAL NOT NULL, metric TEXT NOT NULL, level TEXT NOT NULL, previous TEXT NOT NULL, value REAL);
CREATE INDEX metric_level_changes_at ON metric_level_changes (at);
""",
    # One row: the brain that may act on the fleet (docs/engines.md, "One brain, many viewers").
    """
CREATE TABLE brain_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL, token INTEGER NOT NULL,
    acquired REAL NOT NULL, expires REAL NOT NULL
);
""",
    # the highest CPU percent any node reached while the run was active (the "CPU during runs" KPI)
    "ALTER TABLE rebalance_runs ADD COLUMN peak_cpu_percent REAL;",
    # approve / reject of a healing task from the CLI, waiting for the acting brain to carry it out
    """
CREATE TABLE task_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, task TEXT NOT NULL, decision TEXT NOT NULL,
    actor TEXT NOT NULL, seen INTEGER NOT NULL DEFAULT 0
);
""",
    # Queued work between two nodes: taken off `source` by a run's queue.move (change `seq`), not yet
    # placed. `heading` is the node it is being offered to (the target, or the source it goes back to).
    """
CREATE TABLE queue_transit (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL,
    heading TEXT NOT NULL, items TEXT NOT NULL, since REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
);
""",
]

GRANT_COLUMNS = "id, scope, grantor, created, expires, caps, uses, max_uses, revoked, reason, fingerprint"
CHANGE_COLUMNS = ("run_id", "seq", "node", "action", "target", "args", "revert_action", "revert_args", "applied", "reverted")
CHANGE_SELECT = ", ".join(CHANGE_COLUMNS)
CHANGE_SELECT_C = ", ".join(f"c.{c}" for c in CHANGE_COLUMNS)


@dataclass(frozen=True)
class QueueTransit:
    """Queue items a run's `queue.move` (change `seq`) took off `source` and no node has accepted yet:
    they exist only here until `heading` (the target, or the source they go back to) takes them."""

    run_id: str
    seq: int
    source: str
    target: str
    heading: str
    items: list[dict[str, Any]]
    since: float


TRANSIT_COLUMNS = "run_id, seq, source, target, heading, items, since"


class StaleFence(ValueError):
    """A fenced write whose token is no longer the lease's: another brain took the fleet over.
    A ValueError, so a console shows it as the one-line reason an action did not take."""


@dataclass(frozen=True)
class LeaseRow:
    holder: str
    token: int
    acquired: float
    expires: float


@dataclass(frozen=True)
class LeaseClaim:
    """The lease after a claim: `row` as it now is; `previous` the row it replaced when the claim
    took the lease over (None for a renewal, a first lease or a refused claim)."""

    row: LeaseRow
    held: bool
    previous: LeaseRow | None


def _grant(row: Any) -> Grant:
    gid, scope, grantor, created, expires, caps, uses, max_uses, revoked, reason, fp = row
    return Grant(gid, scope, grantor, created, expires, json.loads(caps), uses, max_uses, revoked, reason, fp)


class Records:
    def __init__(self, store: Store, anchor: Path) -> None:
        self.store = store
        self.anchor = anchor
        self._committed = audit.Head(0, audit.GENESIS)  # the newest audit entry this instance committed
        self._committed_at = 0.0  # its time, which the anchor records
        self._durable = audit.Head(0, audit.GENESIS)  # the newest one fsync'd and anchored
        self._durable_lock = asyncio.Lock()
        # The lease token while this console's brain acts: every write checks it and every audit entry carries it.
        self.fence: int | None = None

    @classmethod
    async def open(cls, store: Store, anchor: Path) -> "Records":
        await store.apply_migrations(COMPONENT, MIGRATIONS)
        return cls(store, anchor)

    @property
    def db(self) -> aiosqlite.Connection:
        return self.store.db

    @asynccontextmanager
    async def write(self, audit_entry: tuple[float, str, str, dict[str, Any]] | None = None, *,
                    fenced: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction; with `audit_entry` (ts, actor, action, details) the audit append commits in
        it, and the write returns only once that entry is on disk and anchored. While `fence` is set the
        transaction first checks it is still the lease's token (StaleFence otherwise, nothing written)
        and the audit entry carries it."""
        appended: audit.AuditEntry | None = None
        async with self.store.transaction() as db:
            fence = self.fence if fenced else None
            if fence is not None:
                await self._check_fence(db, fence)
            yield db
            if audit_entry is not None:
                ts, actor, action, details = audit_entry
                if fence is not None:
                    details = {**details, "fence": fence}
                appended = await self._append_in(db, ts, actor, action, details)
        if appended is not None:
            await self._appended(appended)

    async def _append_in(self, db: aiosqlite.Connection, ts: float, actor: str, action: str,
                         details: dict[str, Any]) -> audit.AuditEntry:
        """Append inside the caller's transaction and mark it pending in the anchor before the commit,
        so a crash between commit and anchor leaves a verifiable chain."""
        appended = await audit.append_in(db, ts=ts, actor=actor, action=action, details=details)
        base, pending = audit.Head(appended.seq - 1, appended.prev_hash), audit.Head(appended.seq, appended.hash)
        await asyncio.to_thread(audit.mark_pending, self.anchor, base, pending)
        return appended

    async def _appended(self, appended: audit.AuditEntry) -> None:
        """After the commit: the entry on disk and anchored before the write returns."""
        if appended.seq > self._committed.count:
            self._committed = audit.Head(appended.seq, appended.hash)
            self._committed_at = appended.ts
        await self._make_durable(appended.seq)

    async def _make_durable(self, seq: int) -> None:
        """fsync and anchor in a worker thread, one at a time and in chain order. Appends that commit
        while an fsync runs are made durable together by the next one (a group commit); an append
        whose entry a later fsync already covered returns at once."""
        async with self._durable_lock:
            if self._durable.count >= seq:
                return
            target = self._committed
            await asyncio.to_thread(audit.make_durable, self.store.path, self.anchor, target, self._committed_at)
            self._durable = target

    @staticmethod
    async def _check_fence(db: aiosqlite.Connection, fence: int) -> None:
        rows = list(await db.execute_fetchall("SELECT token, holder FROM brain_lease WHERE id = 1"))
        if not rows or rows[0][0] != fence:
            holder = rows[0][1] if rows else "nobody"
            raise StaleFence(f"lease token {fence} is stale: the brain of {holder} acts on this fleet now")

    async def audit(self, ts: float, actor: str, action: str, details: dict[str, Any], *, fenced: bool = True) -> None:
        """One audit entry; `fenced=False` for an operator's own entry, which no lease governs."""
        async with self.write((ts, actor, action, details), fenced=fenced):
            pass

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return await self.store.read(sql, params)

    # --- consent ----------------------------------------------------------------------

    async def add_grant(self, g: Grant, *, actor: str, now: float) -> None:
        async with self.write((now, actor, "consent.grant", {"grant": g.id, "scope": g.scope, "grantor": g.grantor,
                                                            "expires": g.expires, "caps": g.caps, "reason": g.reason,
                                                            "max_uses": g.max_uses})) as db:
            await db.execute("INSERT INTO grants VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                             (g.id, g.scope, g.grantor, g.created, g.expires, json.dumps(g.caps), g.uses, g.max_uses, g.revoked, g.reason, g.fingerprint))

    async def grants(self) -> list[Grant]:
        return [_grant(r) for r in await self._rows(f"SELECT {GRANT_COLUMNS} FROM grants ORDER BY created")]

    async def grant(self, grant_id: str) -> Grant | None:
        rows = await self._rows(f"SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?", (grant_id,))
        return _grant(rows[0]) if rows else None

    async def use_grant(self, grant_id: str, now: float, fingerprint: str) -> bool:
        """Consume one use atomically: one conditional UPDATE; True only for the caller that got it."""
        async with self.write() as db:
            cur = await db.execute(
                """UPDATE grants SET uses = uses + 1 WHERE id = ? AND revoked IS NULL
                   AND (expires IS NULL OR expires > ?) AND (max_uses IS NULL OR uses < max_uses)
                   AND (fingerprint IS NULL OR fingerprint = ?)""",
                (grant_id, now, fingerprint),
            )
            return cur.rowcount == 1

    async def revoke_grant(self, grant_id: str, *, actor: str, now: float) -> Grant:
        existing = await self.grant(grant_id)
        if existing is None:
            raise ConsentError(f"no grant with id {grant_id!r}")
        if existing.revoked is not None:
            raise ConsentError(f"grant {grant_id} was already revoked")
        async with self.write((now, actor, "consent.revoke", {"grant": grant_id, "scope": existing.scope})) as db:
            await db.execute("UPDATE grants SET revoked = ? WHERE id = ? AND revoked IS NULL", (now, grant_id))
        return (await self.grant(grant_id)) or existing

    async def add_denial(self, d: Denial, request_id: str | None) -> None:
        async with self.write((d.at, d.grantor, "consent.deny", {"request": request_id, "fingerprint": d.fingerprint,
                                                                "snooze_until": d.snooze_until, "reason": d.reason})) as db:
            await db.execute("INSERT INTO denials VALUES (?,?,?,?,?,?)", (d.id, d.fingerprint, d.grantor, d.at, d.snooze_until, d.reason))
            if request_id:
                await db.execute("UPDATE consent_requests SET state='denied', decided_at=?, decision='deny' WHERE id=?", (d.at, request_id))

    async def denials(self, since: float | None = None) -> list[Denial]:
        rows = await self._rows("SELECT id, fingerprint, grantor, at, snooze_until, reason FROM denials WHERE at >= ? ORDER BY at", (since or 0.0,))
        return [Denial(*r) for r in rows]

    async def save_request(self, r: ConsentRequest) -> None:
        async with self.write() as db:
            await db.execute(
                """INSERT INTO consent_requests VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET
                   reason=excluded.reason, fingerprint=excluded.fingerprint, plan=excluded.plan,
                   state=excluded.state, decided_at=excluded.decided_at, decision=excluded.decision, grant_id=excluded.grant_id""",
                (r.id, r.created, r.expires, r.reason, r.fingerprint, json.dumps(r.plan), r.state, r.decided_at, r.decision, r.grant_id),
            )

    async def requests(self, since: float | None = None, until: float | None = None, *, state: str | None = None) -> list[ConsentRequest]:
        sql = ("SELECT id, created, expires, reason, fingerprint, plan, state, decided_at, decision, grant_id "
               "FROM consent_requests WHERE created >= ? AND created < ?")
        params: list[Any] = [since or 0.0, until if until is not None else float("inf")]
        if state:
            sql += " AND state = ?"
            params.append(state)
        rows = await self._rows(sql + " ORDER BY created", tuple(params))
        return [ConsentRequest(i, c, e, rs, fp, json.loads(p), st, da, dc, g) for i, c, e, rs, fp, p, st, da, dc, g in rows]

    async def consents(self, since: float, until: float) -> list[dict[str, Any]]:
        """Report rows: {at, decision, scope, grantor, reason} for every grant and denial in range."""
        out = [{"at": g.created, "decision": "granted", "scope": g.scope, "grantor": g.grantor, "reason": g.reason}
               for g in await self.grants() if since <= g.created < until]
        out += [{"at": d.at, "decision": "denied", "scope": None, "grantor": d.grantor, "reason": d.reason}
                for d in await self.denials(since) if d.at < until]
        return sorted(out, key=lambda r: r["at"])

    # --- rebalance --------------------------------------------------------------------

    async def run_started(self, run_id: str, grant_id: str | None, priority: str, started: float, plan: dict[str, Any], actor: str) -> None:
        async with self.write((started, actor, "rebalance.start", {"run": run_id, "grant": grant_id, "priority": priority,
                                                                    "actions": [a["note"] for a in plan["actions"]]})) as db:
            await db.execute("INSERT INTO rebalance_runs (id, grant_id, priority, started, plan) VALUES (?,?,?,?,?)",
                             (run_id, grant_id, priority, started, json.dumps(plan)))

    async def journal_change(self, run_id: str, seq: int, node: str, action: str, target: str | None, args: dict[str, Any]) -> None:
        """Written before the change is sent, so a crash mid-step still knows what may need reverting."""
        async with self.write() as db:
            await db.execute("INSERT OR REPLACE INTO rebalance_changes (run_id, seq, node, action, target, args) VALUES (?,?,?,?,?,?)",
                             (run_id, seq, node, action, target, json.dumps(args)))

    async def change_applied(self, run_id: str, seq: int, ok: bool, revert_action: str | None, revert_args: dict[str, Any],
                             step: dict[str, Any], *, now: float, actor: str) -> None:
        async with self.write((now, actor, "rebalance.step", {"run": run_id, **step})) as db:
            await db.execute("UPDATE rebalance_changes SET applied=?, revert_action=?, revert_args=? WHERE run_id=? AND seq=?",
                             (1 if ok else 0, revert_action, json.dumps(revert_args), run_id, seq))
            await db.execute("UPDATE rebalance_runs SET steps = json_insert(steps, '$[#]', json(?)) WHERE id = ?", (json.dumps(step), run_id))

    async def unreverted_changes(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Changes journalled but not reverted; for a run, or for every run that never stopped."""
        if run_id is None:
            sql = f"""SELECT {CHANGE_SELECT_C} FROM rebalance_changes c JOIN rebalance_runs r ON r.id = c.run_id
                     WHERE r.stopped IS NULL AND c.reverted = 0
                     AND (c.revert_action IS NOT NULL OR c.action IN ('node.drain', 'session.pause'))
                     ORDER BY c.run_id, c.seq DESC"""
            rows = await self._rows(sql)
        else:
            rows = await self._rows(f"SELECT {CHANGE_SELECT} FROM rebalance_changes WHERE run_id=? AND reverted=0 AND revert_action IS NOT NULL ORDER BY seq DESC", (run_id,))
        out = []
        for r in rows:
            d = dict(zip(CHANGE_COLUMNS, r))
            d["args"] = json.loads(d["args"])
            d["revert_args"] = json.loads(d["revert_args"])
            out.append(d)
        return out

    async def change_reverted(self, run_id: str, seq: int, *, now: float, actor: str, details: dict[str, Any]) -> None:
        async with self.write((now, actor, "rebalance.revert", {"run": run_id, **details})) as db:
            await db.execute("UPDATE rebalance_changes SET reverted=1 WHERE run_id=? AND seq=?", (run_id, seq))

    async def transit_taken(self, t: QueueTransit) -> None:
        """Items a move took off their source, written before they are offered anywhere."""
        async with self.write() as db:
            await db.execute(f"INSERT OR REPLACE INTO queue_transit ({TRANSIT_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                             (t.run_id, t.seq, t.source, t.target, t.heading, json.dumps(t.items), t.since))

    async def transit_heading(self, t: QueueTransit) -> None:
        """What is still in transit, and where it is offered next."""
        async with self.write() as db:
            await db.execute("UPDATE queue_transit SET heading=?, items=? WHERE run_id=? AND seq=?",
                             (t.heading, json.dumps(t.items), t.run_id, t.seq))

    async def transit_placed(self, run_id: str, seq: int) -> None:
        """Every item of a move was accepted by a node during its run."""
        async with self.write() as db:
            await db.execute("DELETE FROM queue_transit WHERE run_id=? AND seq=?", (run_id, seq))

    async def transit_reconciled(self, t: QueueTransit, placed: dict[str, int], remaining: list[dict[str, Any]],
                                 *, now: float, actor: str) -> None:
        """Items a run left in transit, offered again after the run ended: the row goes when nothing
        remains; audited with where they went."""
        details = {"run": t.run_id, "move": t.seq, "source": t.source, "target": t.target, "items": len(t.items),
                   "placed": placed, "remaining": len(remaining)}
        async with self.write((now, actor, "rebalance.transit", details)) as db:
            if remaining:
                await db.execute("UPDATE queue_transit SET items=? WHERE run_id=? AND seq=?",
                                 (json.dumps(remaining), t.run_id, t.seq))
            else:
                await db.execute("DELETE FROM queue_transit WHERE run_id=? AND seq=?", (t.run_id, t.seq))

    async def queue_transit(self) -> list[QueueTransit]:
        rows = await self._rows(f"SELECT {TRANSIT_COLUMNS} FROM queue_transit ORDER BY since, run_id, seq")
        return [QueueTransit(r, q, s, tg, h, json.loads(items), since) for r, q, s, tg, h, items, since in rows]

    async def open_runs(self) -> list[str]:
        return [r[0] for r in await self._rows("SELECT id FROM rebalance_runs WHERE stopped IS NULL ORDER BY started")]

    async def run_stopped(self, run_id: str, *, now: float, reason: str, restored: bool, time_to_restore_s: float | None,
                          reverted: int, duration_s: float, actor: str, peak_cpu_percent: float | None = None) -> None:
        async with self.write((now, actor, "rebalance.stop", {"run": run_id, "reason": reason, "restored": restored,
                                                              "reverted": reverted, "duration_s": duration_s,
                                                              "peak_cpu_percent": peak_cpu_percent})) as db:
            await db.execute("UPDATE rebalance_runs SET stopped=?, reason_stopped=?, restored=?, time_to_restore_s=?, peak_cpu_percent=? WHERE id=?",
                             (now, reason, 1 if restored else 0, time_to_restore_s, peak_cpu_percent, run_id))

    async def rebalances(self, since: float, until: float) -> list[dict[str, Any]]:
        """Report rows: {started, stopped, reason_stopped, priority, actions, restored, time_to_restore_s, peak_cpu_percent, grant}."""
        rows = await self._rows("SELECT id, grant_id, priority, started, stopped, reason_stopped, restored, time_to_restore_s, steps, peak_cpu_percent "
                                "FROM rebalance_runs WHERE started >= ? AND started < ? ORDER BY started", (since, until))
        return [{"run": i, "grant": g, "priority": p, "started": s, "stopped": st, "reason_stopped": rs,
                 "restored": None if r is None else bool(r), "time_to_restore_s": t, "actions": json.loads(steps),
                 "peak_cpu_percent": cpu}
                for i, g, p, s, st, rs, r, t, steps, cpu in rows]

    # --- policies ---------------------------------------------------------------------

    async def save_policy_state(self, st: PolicyState) -> None:
        async with self.write() as db:
            await db.execute("INSERT OR REPLACE INTO policy_state VALUES (?,?,?,?)", (st.node, st.session, st.policy, json.dumps(st.to_dict())))

    async def policy_states(self) -> list[PolicyState]:
        out = []
        for (raw,) in await self._rows("SELECT state FROM policy_state"):
            try:
                out.append(PolicyState(**json.loads(raw)))
            except (TypeError, ValueError):
                continue  # a row from a different version: that pair starts fresh
        return out

    async def policy_action(self, *, at: float, policy: str, node: str, session: str, action: str, attempt: int, outcome: str,
                            state: PolicyState, actor: str) -> None:
        async with self.write((at, actor, "policy.action", {"policy": policy, "node": node, "session": session,
                                                            "action": action, "attempt": attempt, "outcome": outcome})) as db:
            await db.execute("INSERT INTO policy_actions VALUES (?,?,?,?,?,?,?)", (at, policy, node, session, action, attempt, outcome))
            await db.execute("INSERT OR REPLACE INTO policy_state VALUES (?,?,?,?)", (state.node, state.session, state.policy, json.dumps(state.to_dict())))

    async def policy_actions(self, since: float, until: float) -> list[dict[str, Any]]:
        """Report rows: {at, policy, node, session, action, attempt, outcome}."""
        rows = await self._rows("SELECT at, policy, node, session, action, attempt, outcome FROM policy_actions WHERE at >= ? AND at < ? ORDER BY at", (since, until))
        return [dict(zip(("at", "policy", "node", "session", "action", "attempt", "outcome"), r)) for r in rows]

    # --- detector ---------------------------------------------------------------------

    async def kv_get(self, key: str) -> Any:
        rows = await self._rows("SELECT value FROM engine_kv WHERE key = ?", (key,))
        if not rows:
            return None
        try:
            return json.loads(rows[0][0])
        except ValueError:
            return None

    async def kv_set(self, key: str, value: Any) -> None:
        async with self.write() as db:
            await db.execute("INSERT OR REPLACE INTO engine_kv VALUES (?, ?)", (key, json.dumps(value)))

    async def kv_set_audited(self, key: str, value: Any, entry: tuple[float, str, str, dict[str, Any]]) -> None:
        """An engine's state with the audit entry of the step that changed it, in one transaction."""
        async with self.write(entry) as db:
            await db.execute("INSERT OR REPLACE INTO engine_kv VALUES (?, ?)", (key, json.dumps(value)))

    async def save_account_windows(self, windows: Sequence[AccountWindow]) -> None:
        """The account windows as the brain last derived them (what every reader shows)."""
        await self.kv_set(ACCOUNT_WINDOWS, [w.to_dict() for w in windows])

    async def account_windows(self) -> list[AccountWindow]:
        raw = await self.kv_get(ACCOUNT_WINDOWS)
        out = []
        for item in raw if isinstance(raw, list) else []:
            try:
                out.append(window_from_dict(item))
            except TypeError:
                continue  # written by another version of heady: derived again at the next refresh
        return out

    async def level_changes_made(self, change: LevelChange | None, metric_changes: Sequence[MetricLevelChange],
                                 detector_state: dict[str, Any]) -> None:
        """An evaluation's fleet and per-metric level changes, with the detector's timers, in one transaction."""
        async with self.write() as db:
            if change is not None:
                await db.execute("INSERT INTO level_changes VALUES (?,?,?,?)", (change.at, change.level, change.previous, json.dumps(change.metrics)))
            if metric_changes:
                await db.executemany("INSERT INTO metric_level_changes VALUES (?,?,?,?,?)",
                                     [(c.at, c.metric, c.level, c.previous, c.value) for c in metric_changes])
            await db.execute("INSERT OR REPLACE INTO engine_kv VALUES ('detector', ?)", (json.dumps(detector_state),))

    async def level_changes(self, since: float, until: float) -> list[dict[str, Any]]:
        """Report rows: {at, level, previous, metrics: {name: value}}."""
        rows = await self._rows("SELECT at, level, previous, metrics FROM level_changes WHERE at >= ? AND at < ? ORDER BY at", (since, until))
        return [{"at": a, "level": lv, "previous": p, "metrics": json.loads(m)} for a, lv, p, m in rows]

    async def metric_level_changes(self, since: float, until: float) -> list[dict[str, Any]]:
        """Report rows: {at, metric, level, previous, value}, one per change of a metric's recorded level."""
        rows = await self._rows("SELECT at, metric, level, previous, value FROM metric_level_changes WHERE at >= ? AND at < ? "
                                "ORDER BY at, rowid", (since, until))
        return [{"at": a, "metric": m, "level": lv, "previous": p, "value": v} for a, m, lv, p, v in rows]

    # --- healing ----------------------------------------------------------------------

    async def save_cycle(self, cycle_id: str, at: float, kind: str, body: dict[str, Any],
                         weak_points: Sequence[dict[str, Any]] = ()) -> None:
        """The cycle and its weak points (bodies with id, opened, closed), in one transaction."""
        wp_rows = [(wp["id"], wp["opened"], wp["closed"], json.dumps(wp, default=str)) for wp in weak_points]
        async with self.write() as db:
            await db.execute("INSERT OR REPLACE INTO healing_cycles VALUES (?,?,?,?)", (cycle_id, at, kind, json.dumps(body, default=str)))
            if wp_rows:
                await db.executemany("INSERT OR REPLACE INTO weak_points VALUES (?,?,?,?)", wp_rows)

    async def healing_cycles(self, since: float = 0.0, until: float = float("inf"), limit: int | None = None) -> list[dict[str, Any]]:
        """Report rows, newest last: the cycle bodies (id, at, kind, summary, weak_points, tasks, ...)."""
        sql = "SELECT body FROM healing_cycles WHERE at >= ? AND at < ? ORDER BY at DESC"
        params: tuple[Any, ...] = (since, until)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        return [json.loads(b) for (b,) in reversed(await self._rows(sql, params))]

    async def save_task(self, task: dict[str, Any], *, audit_action: str | None = None, now: float = 0.0, actor: str = "") -> None:
        entry = (now, actor, audit_action, {k: task[k] for k in ("id", "strategy", "node", "subject", "state")}) if audit_action else None
        async with self.write(entry) as db:
            await db.execute("INSERT OR REPLACE INTO tasks VALUES (?,?,?,?)", (task["id"], task["created"], task["state"], json.dumps(task, default=str)))

    async def tasks(self) -> list[dict[str, Any]]:
        return [json.loads(b) for (b,) in await self._rows("SELECT body FROM tasks ORDER BY created")]

    async def decide_task(self, now: float, task_id: str, decision: str, actor: str) -> None:
        """Queue an operator's approve | reject for the acting brain (`take_task_decisions`)."""
        async with self.write(fenced=False) as db:  # a person's decision, whichever brain holds the lease
            await db.execute("INSERT INTO task_decisions (at, task, decision, actor) VALUES (?,?,?,?)",
                             (now, task_id, decision, actor))

    async def undecided(self, task_id: str) -> bool:
        """No decision about this task is waiting for the brain."""
        return not await self._rows("SELECT 1 FROM task_decisions WHERE task = ? AND seen = 0 LIMIT 1", (task_id,))

    async def take_task_decisions(self) -> list[dict[str, Any]]:
        """Decisions queued by `heady healing approve|reject`, oldest first, marked seen."""
        # Asked every tick: a plain read, and a write transaction only when there is something to take.
        if not await self._rows("SELECT 1 FROM task_decisions WHERE seen = 0 LIMIT 1"):
            return []
        async with self.write() as db:
            rows = list(await db.execute_fetchall("SELECT id, at, task, decision, actor FROM task_decisions WHERE seen = 0 ORDER BY id"))
            if rows:
                await db.execute(f"UPDATE task_decisions SET seen = 1 WHERE id IN ({','.join('?' * len(rows))})", tuple(r[0] for r in rows))
        return [{"id": i, "at": a, "task": t, "decision": d, "actor": who} for i, a, t, d, who in rows]

    # --- deploys and budgets ----------------------------------------------------------

    async def notify_deploy(self, now: float, node: str | None, source: str, actor: str) -> None:
        async with self.write((now, actor, "deploy.notice", {"node": node, "source": source})) as db:
            await db.execute("INSERT INTO deploy_notices (at, node, source) VALUES (?,?,?)", (now, node, source))

    async def take_deploy_notices(self) -> list[dict[str, Any]]:
        """Unseen deploy notices (from `heady notify-deploy` or this console), marked seen."""
        # Asked every tick: a plain read, and a write transaction only when there is something to take.
        if not await self._rows("SELECT 1 FROM deploy_notices WHERE seen = 0 LIMIT 1"):
            return []
        async with self.write() as db:
            rows = list(await db.execute_fetchall("SELECT id, at, node, source FROM deploy_notices WHERE seen = 0 ORDER BY id"))
            if rows:
                await db.execute(f"UPDATE deploy_notices SET seen = 1 WHERE id IN ({','.join('?' * len(rows))})", tuple(r[0] for r in rows))
        return [{"id": i, "at": a, "node": n, "source": s} for i, a, n, s in rows]

    async def budget_notices_sent(self) -> set[tuple[str, str, int]]:
        return {(b, p, pc) for b, p, pc in await self._rows("SELECT budget, period, percent FROM budget_notices")}

    async def budget_notice(self, budget: str, period: str, percent: int, at: float) -> None:
        async with self.write() as db:
            await db.execute("INSERT OR IGNORE INTO budget_notices VALUES (?,?,?,?)", (budget, period, percent, at))

    # --- the brain's lease ------------------------------------------------------------

    async def lease(self) -> LeaseRow | None:
        rows = await self._rows("SELECT holder, token, acquired, expires FROM brain_lease WHERE id = 1")
        return LeaseRow(*rows[0]) if rows else None

    async def claim_lease(self, holder: str, token: int | None, now: float, lease_s: float) -> LeaseClaim:
        """Renew the lease `token` of `holder`, or take it when it is free or expired (a new token, one
        above the last, audited as `brain.lease`); refused while another holder's lease runs. One
        transaction, so two brains claiming at once get one lease."""
        async with self.store.transaction() as db:
            rows = list(await db.execute_fetchall("SELECT holder, token, acquired, expires FROM brain_lease WHERE id = 1"))
            current = LeaseRow(*rows[0]) if rows else None
            if current is not None and current.holder == holder and current.token == token:
                row = LeaseRow(holder, current.token, current.acquired, now + lease_s)
                await db.execute("UPDATE brain_lease SET expires = ? WHERE id = 1", (row.expires,))
                return LeaseClaim(row, True, None)
            if current is not None and current.expires > now:
                return LeaseClaim(current, False, None)
            row = LeaseRow(holder, (current.token if current else 0) + 1, now, now + lease_s)
            await db.execute("INSERT OR REPLACE INTO brain_lease VALUES (1, ?, ?, ?, ?)", (row.holder, row.token, row.acquired, row.expires))
            entry = await self._append_in(db, now, holder, "brain.lease", {
                "holder": holder, "fence": row.token, "expires": row.expires,
                "previous": current.holder if current else None, "previous_expires": current.expires if current else None})
        await self._appended(entry)
        return LeaseClaim(row, True, current)

    async def renew_lease(self, holder: str, token: int, now: float, lease_s: float) -> LeaseRow | None:
        """Extend this holder's lease; None when its token is no longer the lease's."""
        async with self.store.transaction() as db:
            cur = await db.execute("UPDATE brain_lease SET expires = ? WHERE id = 1 AND holder = ? AND token = ?",
                                   (now + lease_s, holder, token))
            if cur.rowcount != 1:
                return None
            rows = list(await db.execute_fetchall("SELECT holder, token, acquired, expires FROM brain_lease WHERE id = 1"))
        return LeaseRow(*rows[0])

    async def release_lease(self, holder: str, token: int, now: float) -> None:
        """End this holder's lease now, so another brain takes over at its next claim."""
        async with self.store.transaction() as db:
            await db.execute("UPDATE brain_lease SET expires = ? WHERE id = 1 AND holder = ? AND token = ?", (now, holder, token))

    # --- audit ------------------------------------------------------------------------

    async def audit_entries(self, limit: int | None = None) -> list[AuditEntry]:
        return await audit.entries(self.store.reader, limit)

    # (Annotated with the imported names: inside the class, `audit` is the method above.)
    async def verify_audit(self, against: Head | None = None) -> Verification:
        return await audit.verify(self.store.reader, self.anchor, against)

    async def config_hash_check(self, config_hash: str, now: float, actor: str) -> bool:
        """Audit a configuration change: True when the config differs from the last one recorded."""
        last = await self.kv_get("config_hash")
        if last == config_hash:
            return False
        async with self.write((now, actor, "config.change", {"previous": last, "current": config_hash})) as db:
            await db.execute("INSERT OR REPLACE INTO engine_kv VALUES ('config_hash', ?)", (json.dumps(config_hash),))
        return True
