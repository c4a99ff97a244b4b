"""`heady nodes list` / `heady sessions list [--json]`.

Asks each configured node briefly (hello, then its current sessions, nothing replayed and nothing
acked, so it changes nothing), and falls back to what the store last saw for a node that does not
answer; every row says which (`live` true or false). Nodes known only to the store (the embedded
agent, a demo fleet) are listed from the store.

Sessions are the store's session ledger (state and reason, calls, tokens by kind, cost): the same
rows the console, the report and the screens show. A live node's current list is applied to its
ledger rows with the console's own rule, in memory (this command writes nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from heady_agent.clock import SystemClock
from heady_agent.protocol import MAX_FRAME_BYTES, FrameError, Hello, SessionInfo, Sessions, Subscribe, clean_line, dump, parse_agent_frame

from ..config import ConfigError, NodeConfig, Paths
from ..ledger import PRIORITY_BY_OPERATOR, PriorityRules, SessionRecord, apply_snapshot
from ..link import describe_connect_error, tls_context
from ..store import Store, StoreError
from .headless import paths_and_config

STORED_HISTORY_S = 7 * 86400.0
CELL_MAX = 60  # characters of a table cell


@dataclass
class Probe:
    node: str
    hello: Hello | None = None
    sessions: list[SessionInfo] = field(default_factory=list)
    error: str | None = None


async def probe(node: NodeConfig, timeout: float) -> Probe:
    """Hello and the current sessions of one node, or why it could not be asked."""
    result = Probe(node.name)
    try:
        token = node.resolve_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with asyncio.timeout(timeout):
            async with connect(
                node.url, additional_headers=headers, ssl=tls_context(node), max_size=MAX_FRAME_BYTES, open_timeout=timeout
            ) as ws:
                hello = parse_agent_frame(await ws.recv())
                if not isinstance(hello, Hello):
                    raise FrameError("protocol", f"expected hello, got {hello.type}")
                result.hello = hello
                # Subscribing at the journal's end replays nothing; the agent answers with its sessions.
                await ws.send(dump(Subscribe(since=hello.journal.last_seq, journal=hello.journal.id)))
                while True:
                    frame = parse_agent_frame(await ws.recv())
                    if isinstance(frame, Sessions):
                        result.sessions = list(frame.sessions)
                        return result
    except TimeoutError:
        result.error = f"no answer within {timeout:g} s"
    except FrameError as exc:
        result.error = f"protocol: {exc.message}"
    except ConfigError as exc:
        result.error = str(exc)
    except ConnectionClosed:
        result.error = "connection closed by the agent"
    except Exception as exc:
        result.error = describe_connect_error(exc)
    return result


async def _stored(paths: Paths) -> tuple[list[dict[str, Any]], list[SessionRecord], dict[str, tuple[str, int]]]:
    """Nodes, ledger sessions (live ones, and any active in the last week of activity) and cursors
    the store holds; empty without a database."""
    if not paths.database.exists():
        return [], [], {}
    store = await Store.open(paths.database)
    try:
        nodes = await store.nodes()
        cursors = await store.cursors()
        newest = max((n["last_seen"] for n in nodes), default=0.0)
        sessions = await store.sessions(active_since=newest - STORED_HISTORY_S, or_live=True)
        return nodes, sessions, cursors
    finally:
        await store.close()


async def gather(paths: Paths, nodes: list[NodeConfig], timeout: float,
                 priority: PriorityRules) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    probes = await asyncio.gather(*(probe(n, timeout) for n in nodes))
    stored_nodes, ledger, cursors = await _stored(paths)
    by_node: dict[str, dict[str, SessionRecord]] = {}
    for rec in ledger:
        by_node.setdefault(rec.node, {})[rec.id] = rec
    by_id = {n["id"]: n for n in stored_nodes}
    node_rows: list[dict[str, Any]] = []
    session_rows: list[dict[str, Any]] = []
    configured = {n.name for n in nodes}
    for p in probes:
        stored = by_id.get(p.node)
        node_sessions = by_node.get(p.node, {})
        if p.hello is not None:
            info = p.hello.node
            priority.set_labels(p.node, info.labels)
            # What the console would make of it: the ledger's rules, the same class.
            for rec in apply_snapshot(node_sessions, p.node, p.sessions, SystemClock().now()):
                priority.classify(rec)
            node_rows.append({
                "name": p.node, "live": True, "status": "online", "error": None, "hostname": info.hostname,
                "agent_version": info.agent_version, "os": info.os, "cpu_count": info.cpu_count,
                "mem_total": info.mem_total, "labels": info.labels, "journal": p.hello.journal.id,
                "last_seq": p.hello.journal.last_seq, "simulated": p.hello.simulated,
                "last_seen": None, "sessions": len(p.sessions),
            })  # fmt: skip
        else:
            node_rows.append(_stored_node(p.node, stored, cursors, node_sessions, error=p.error or "unreachable"))
        session_rows += _session_rows(node_sessions, live=p.hello is not None)
    for node_id in sorted(set(by_id) - configured):
        node_sessions = by_node.get(node_id, {})
        node_rows.append(_stored_node(node_id, by_id[node_id], cursors, node_sessions, error=None))
        session_rows += _session_rows(node_sessions, live=False)
    return node_rows, session_rows


def session_fields(rec: SessionRecord) -> dict[str, Any]:
    """A ledger row as `sessions list --json` shows it."""
    return {
        "node": rec.node, "id": rec.id, "source": rec.source, "project": rec.project, "title": rec.title, "cwd": rec.cwd,
        "pid": rec.pid, "model": rec.model, "state": rec.state, "reason": rec.state_reason, "priority": rec.priority,
        "priority_by": rec.priority_by, "started": rec.started,
        "ended": rec.ended, "managed": rec.managed, "calls": rec.calls, "failed_calls": rec.failed_calls,
        "input_tokens": rec.input_tokens, "output_tokens": rec.output_tokens,
        "cache_write_5m_tokens": rec.cache_write_5m_tokens, "cache_write_1h_tokens": rec.cache_write_1h_tokens,
        "cache_read_tokens": rec.cache_read_tokens, "reasoning_tokens": rec.reasoning_tokens,
        "cost_usd": round(rec.cost_usd, 6),
        "reported_cost_usd": round(rec.reported_cost_usd, 6) if rec.reported_cost_usd is not None else None,
        "unpriced_calls": rec.unpriced_calls, "first_activity": rec.first_activity, "last_activity": rec.last_event_at,
        "compactions": rec.compactions,
    }  # fmt: skip


def _session_rows(node_sessions: dict[str, SessionRecord], *, live: bool) -> list[dict[str, Any]]:
    ordered = sorted(node_sessions.values(), key=lambda r: (not r.active, r.started or r.first_activity or 0.0, r.id))
    return [{"live": live, **session_fields(r)} for r in ordered]


def _stored_node(
    name: str, stored: dict[str, Any] | None, cursors: dict[str, tuple[str, int]], node_sessions: dict[str, SessionRecord], *, error: str | None
) -> dict[str, Any]:
    info = stored["info"] if stored else {}
    journal, seq = cursors.get(name, (None, 0))
    return {
        "name": name, "live": False, "status": "unreachable" if error else "stored", "error": error,
        "hostname": stored["hostname"] if stored else "", "agent_version": info.get("agent_version", ""),
        "os": info.get("os", ""), "cpu_count": info.get("cpu_count"), "mem_total": info.get("mem_total"),
        "labels": info.get("labels", {}), "journal": journal, "last_seq": seq,
        "simulated": bool(stored and stored["simulated"]), "last_seen": stored["last_seen"] if stored else None,
        "sessions": sum(1 for r in node_sessions.values() if r.active),
    }  # fmt: skip


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    try:
        return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")
    except (ValueError, OverflowError, OSError):
        return "?"  # a time no calendar holds (stored before the link checked timestamps)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    # Cells are agent text: made one terminal-safe line each, cut so one name cannot widen every row.
    rows = [[clean_line(cell, CELL_MAX) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _gib(n: int | None) -> str:
    return f"{n / 2**30:.1f}G" if n else "-"


def render_nodes(rows: list[dict[str, Any]]) -> str:
    table = [
        [r["name"], r["status"], r["hostname"] or "-",
         r["os"] or "-", str(r["cpu_count"] or "-"), _gib(r["mem_total"]), str(r["sessions"]), str(r["last_seq"]),
         "yes" if r["simulated"] else "", _when(r["last_seen"]) if not r["live"] else "now", r["error"] or ""]  # fmt: skip
        for r in rows
    ]
    headers = ["NODE", "STATUS", "HOST", "OS", "CPUS", "MEM", "SESSIONS", "SEQ", "SIM", "SEEN", "ERROR"]
    return _table(headers, table) if rows else "no nodes configured or stored"


def _state(row: dict[str, Any]) -> str:
    return f"{row['state']} ({row['reason']})" if row["reason"] else row["state"]


def render_sessions(rows: list[dict[str, Any]]) -> str:
    table = [
        [r["node"], r["id"][:16], (r["title"] or "-")[:24], r["source"] or "-", r["project"] or "-", r["model"] or "-",
         _state(r), r["priority"] + ("*" if r["priority_by"] == PRIORITY_BY_OPERATOR else ""), str(r["calls"]), f"${r['cost_usd']:,.2f}", str(r["pid"] or "-"), _when(r["started"]),
         "live" if r["live"] else "stored"]  # fmt: skip
        for r in rows
    ]
    headers = ["NODE", "SESSION", "TITLE", "SOURCE", "PROJECT", "MODEL", "STATE", "PRIO", "CALLS", "COST", "PID", "STARTED", "FROM"]
    return _table(headers, table) if rows else "no sessions"


def run(args: argparse.Namespace) -> int:
    paths, config = paths_and_config(args)
    if not args.timeout > 0:
        print("heady: error: --timeout must be above 0", file=sys.stderr)
        return 2
    try:
        nodes, sessions = asyncio.run(gather(paths, config.nodes, args.timeout, PriorityRules(config.priority.rules)))
    except StoreError as exc:
        print(f"heady: error: {exc}", file=sys.stderr)
        return 1
    rows = nodes if args.command == "nodes" else sessions
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(render_nodes(rows) if args.command == "nodes" else render_sessions(rows))
    for r in nodes:
        if r["error"] and r["status"] == "unreachable":
            print(f"heady: {r['name']}: {r['error']}; showing what the store last saw", file=sys.stderr)
    return 0
