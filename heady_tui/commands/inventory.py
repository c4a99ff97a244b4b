"""`heady nodes list` / `heady sessions list [--json]`.

Asks each configured node briefly (hello, then its current sessions, nothing replayed and nothing
acked, so it changes nothing), and falls back to what the store last saw for a node that does not
answer; every row says which (`live` true or false). Nodes known only to the store (the embedded
agent, a demo fleet) are listed from the store.
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

from heady_agent.protocol import MAX_FRAME_BYTES, clean_line, Event, FrameError, Hello, Sessions, Subscribe, dump, parse_agent_frame

from ..config import ConfigError, NodeConfig, Paths
from ..fleet import Fleet
from ..link import describe_connect_error, tls_context
from ..store import Store, StoreError
from .headless import paths_and_config

STORED_HISTORY_S = 7 * 86400.0
CELL_MAX = 60  # characters of a table cell


@dataclass
class Probe:
    node: str
    hello: Hello | None = None
    sessions: list[dict[str, Any]] = field(default_factory=list)
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
                        result.sessions = [s.model_dump() for s in frame.sessions]
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


async def _stored(paths: Paths) -> tuple[list[dict[str, Any]], Fleet, dict[str, tuple[str, int]]]:
    """Nodes, sessions (rebuilt from stored events) and cursors the store holds; empty without a database."""
    fleet = Fleet()
    if not paths.database.exists():
        return [], fleet, {}
    store = await Store.open(paths.database)
    try:
        nodes = await store.nodes()
        cursors = await store.cursors()
        newest = max((n["last_seen"] for n in nodes), default=0.0)
        for ev in await store.events(newest - STORED_HISTORY_S, kinds=("session.started", "session.state", "session.ended", "llm.call")):
            fleet.apply_frame(ev.node, Event.model_construct(seq=ev.seq, ts=ev.ts, kind=ev.kind, session=ev.session, data=ev.data, journal=ev.journal))
        return nodes, fleet, cursors
    finally:
        await store.close()


async def gather(paths: Paths, nodes: list[NodeConfig], timeout: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    probes = await asyncio.gather(*(probe(n, timeout) for n in nodes))
    stored_nodes, fleet, cursors = await _stored(paths)
    by_id = {n["id"]: n for n in stored_nodes}
    node_rows: list[dict[str, Any]] = []
    session_rows: list[dict[str, Any]] = []
    configured = {n.name for n in nodes}
    for p in probes:
        stored = by_id.get(p.node)
        if p.hello is not None:
            info = p.hello.node
            node_rows.append({
                "name": p.node, "live": True, "status": "online", "error": None, "hostname": info.hostname,
                "agent_version": info.agent_version, "os": info.os, "cpu_count": info.cpu_count,
                "mem_total": info.mem_total, "labels": info.labels, "journal": p.hello.journal.id,
                "last_seq": p.hello.journal.last_seq, "simulated": p.hello.simulated,
                "last_seen": None, "sessions": len(p.sessions),
            })  # fmt: skip
            for s in p.sessions:
                session_rows.append({"node": p.node, "live": True, **_session_fields(s)})
        else:
            node_rows.append(_stored_node(p.node, stored, cursors, fleet, error=p.error or "unreachable"))
            session_rows += _stored_sessions(p.node, fleet)
    for node_id in sorted(set(by_id) - configured):
        node_rows.append(_stored_node(node_id, by_id[node_id], cursors, fleet, error=None))
        session_rows += _stored_sessions(node_id, fleet)
    return node_rows, session_rows


def _session_fields(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "source", "project", "cwd", "pid", "model", "title", "state", "started", "managed")
    return {k: s.get(k) for k in keys} | {"calls": None, "cost_usd": None}


def _stored_node(name: str, stored: dict[str, Any] | None, cursors: dict[str, tuple[str, int]], fleet: Fleet, *, error: str | None) -> dict[str, Any]:
    info = stored["info"] if stored else {}
    journal, seq = cursors.get(name, (None, 0))
    return {
        "name": name, "live": False, "status": "unreachable" if error else "stored", "error": error,
        "hostname": stored["hostname"] if stored else "", "agent_version": info.get("agent_version", ""),
        "os": info.get("os", ""), "cpu_count": info.get("cpu_count"), "mem_total": info.get("mem_total"),
        "labels": info.get("labels", {}), "journal": journal, "last_seq": seq,
        "simulated": bool(stored and stored["simulated"]), "last_seen": stored["last_seen"] if stored else None,
        "sessions": sum(1 for r in fleet.node_sessions(name) if r.active),
    }  # fmt: skip


def _stored_sessions(name: str, fleet: Fleet) -> list[dict[str, Any]]:
    return [
        {"node": name, "live": False, "id": r.id, "source": r.source, "project": r.project, "cwd": r.cwd, "pid": r.pid,
         "model": r.model, "title": r.title, "state": r.state, "started": r.started, "managed": r.managed,
         "calls": r.calls, "cost_usd": round(r.cost_usd, 6)}  # fmt: skip
        for r in sorted(fleet.node_sessions(name), key=lambda r: r.started or 0.0)
        if r.active
    ]


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


def render_sessions(rows: list[dict[str, Any]]) -> str:
    table = [
        [r["node"], r["id"][:16], r["source"] or "-", r["project"] or "-", r["model"] or "-", r["state"],
         str(r["pid"] or "-"), _when(r["started"]), "live" if r["live"] else "stored"]  # fmt: skip
        for r in rows
    ]
    headers = ["NODE", "SESSION", "SOURCE", "PROJECT", "MODEL", "STATE", "PID", "STARTED", "FROM"]
    return _table(headers, table) if rows else "no sessions"


def run(args: argparse.Namespace) -> int:
    paths, config = paths_and_config(args)
    if not args.timeout > 0:
        print("heady: error: --timeout must be above 0", file=sys.stderr)
        return 2
    try:
        nodes, sessions = asyncio.run(gather(paths, config.nodes, args.timeout))
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
