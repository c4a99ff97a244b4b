"""What each table and panel shows, computed from the fleet and the brain: no Textual here.

A view cell is (text, severity or None); widgets colour it from the theme. Keeping the choice of
rows, order and severity here lets tests read it without a terminal and keeps widgets thin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from heady_agent.config import AgentConfig

from ..fleet import Fleet, NodeState, SessionRecord
from . import formatting as fmt
from .widgets.spark import sparkline

ViewCell = tuple[str, str | None]

STATE_SEVERITY = {
    "running": "ok",
    "idle": "careful",
    "compacted": "careful",
    "paused": "warning",
    "error": "critical",
    "completed": None,
}
STATUS_SEVERITY = {"online": "ok", "connecting": "careful", "offline": "critical", "error": "critical"}

NODE_COLUMNS = (
    ("node", "Node"),
    ("status", "Status"),
    ("cpu", "CPU"),
    ("cpu_spark", "CPU 60s"),
    ("mem", "Mem"),
    ("mem_spark", "Mem 60s"),
    ("load", "Load"),
    ("sessions", "Sess"),
    ("queue", "Queue"),
    ("cost", "Today"),
    ("since", "Since"),
)
NODE_COLUMNS_COMPACT = (
    ("node", "Node"),
    ("status", "Status"),
    ("cpu", "CPU"),
    ("cpu_spark", "CPU"),
    ("mem", "Mem"),
    ("load", "Load"),
    ("sessions", "Sess"),
    ("queue", "Queue"),
    ("cost", "Today"),
)

SESSION_COLUMNS = (
    ("node", "Node"),
    ("source", "Source"),
    ("project", "Project"),
    ("model", "Model"),
    ("state", "State"),
    ("age", "Age"),
    ("tokens", "Tokens"),
    ("cost", "Cost"),
)
SESSION_COLUMNS_COMPACT = (
    ("node", "Node"),
    ("project", "Project"),
    ("model", "Model"),
    ("state", "State"),
    ("age", "Age"),
    ("cost", "Cost"),
)
# On a node's own screen the node column says nothing; its width goes to tokens and cost.
NODE_SESSION_COLUMNS = tuple(column for column in SESSION_COLUMNS if column[0] not in ("node", "source"))


SESSION_KEY_SEP = "\x1f"  # ids never contain it: control characters are stripped where they enter


def session_key(node: str, session_id: str) -> str:
    return f"{node}{SESSION_KEY_SEP}{session_id}"


def split_session_key(key: str) -> tuple[str, str]:
    node, _, session_id = key.partition(SESSION_KEY_SEP)
    return node, session_id


def _status_text(node: NodeState, now: float) -> ViewCell:
    return (node.status, STATUS_SEVERITY.get(node.status, "careful"))


def _since_text(node: NodeState, now: float) -> str:
    if not node.since:
        return "-"
    return fmt.duration(now - node.since)


def node_row(
    node: NodeState,
    now: float,
    *,
    sessions: int,
    cost_today: float | None,
    spark_width: int,
    compact: bool,
    ascii_only: bool = False,
) -> tuple[ViewCell, ...]:
    metrics = node.metrics
    cpu = metrics.cpu if metrics else None
    mem = metrics.mem if metrics else None
    load = node.utilisation
    cells: dict[str, ViewCell] = {
        "node": (node.id, None),
        "status": _status_text(node, now),
        "cpu": (fmt.percent(cpu), fmt.percent_severity(cpu) if cpu is not None else None),
        "cpu_spark": (sparkline(node.cpu.values(spark_width), spark_width, low=0, high=100, ascii_only=ascii_only), "careful"),
        "mem": (fmt.percent(mem), fmt.percent_severity(mem) if mem is not None else None),
        "mem_spark": (sparkline(node.mem.values(spark_width), spark_width, low=0, high=100, ascii_only=ascii_only), "careful"),
        "load": ("-" if load is None else f"{load:.2f}", None if load is None else fmt.percent_severity(load * 100)),
        "sessions": (str(sessions), None),
        "queue": (str(node.queue_depth), None),
        "cost": (fmt.money(cost_today), None),
        "since": (_since_text(node, now), None),
    }
    columns = NODE_COLUMNS_COMPACT if compact else NODE_COLUMNS
    return tuple(cells[key] for key, _ in columns)


class NodeRows:
    """The nodes table's rows, rebuilt per node only when something it shows has changed: with
    hundreds of nodes most are unchanged between two refreshes."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple, tuple[ViewCell, ...]]] = {}

    def rows(
        self,
        fleet: Fleet,
        now: float,
        *,
        costs_today: dict[str, float],
        spark_width: int,
        compact: bool,
        ascii_only: bool = False,
    ) -> dict[str, tuple[ViewCell, ...]]:
        counts: dict[str, int] = {}
        for rec in fleet.sessions.values():
            if rec.active:
                counts[rec.node] = counts.get(rec.node, 0) + 1
        rows = {}
        for node_id in sorted(fleet.nodes):
            node = fleet.nodes[node_id]
            sessions = counts.get(node_id, 0)
            cost = costs_today.get(node_id)
            stamp = (node.last_seq, len(node.cpu), node.status, node.journal, _since_text(node, now), sessions,
                     fmt.money(cost), spark_width, compact, ascii_only)
            cached = self._cache.get(node_id)
            if cached is None or cached[0] != stamp:
                row = node_row(node, now, sessions=sessions, cost_today=cost, spark_width=spark_width,
                               compact=compact, ascii_only=ascii_only)
                cached = self._cache[node_id] = (stamp, row)
            rows[node_id] = cached[1]
        for gone in set(self._cache) - set(fleet.nodes):
            del self._cache[gone]
        return rows


def session_row(
    rec: SessionRecord, now: float, *, compact: bool, columns: tuple[tuple[str, str], ...] | None = None
) -> tuple[ViewCell, ...]:
    age = None if rec.started is None else (rec.ended or now) - rec.started
    cost = fmt.money(rec.cost_usd) + ("?" if rec.cost_unknown else "")
    cells: dict[str, ViewCell] = {
        "node": (rec.node, None),
        "source": (rec.source or "-", None),
        "project": (rec.project or rec.title or rec.id[:12], None),
        "model": (rec.model or "-", None),
        "state": (rec.state, STATE_SEVERITY.get(rec.state)),
        "age": (fmt.duration(age), None),
        "tokens": (fmt.tokens(rec.tokens), None),
        "cost": (cost, None),
    }
    shown = columns or (SESSION_COLUMNS_COMPACT if compact else SESSION_COLUMNS)
    return tuple(cells[key] for key, _ in shown)


def _session_order(rec: SessionRecord) -> tuple:
    # Live sessions first, then the most expensive: what an operator looks for.
    return (not rec.active, -rec.cost_usd, rec.node, rec.id)


def session_rows(
    sessions: Iterable[SessionRecord],
    now: float,
    *,
    compact: bool,
    limit: int | None = None,
    columns: tuple[tuple[str, str], ...] | None = None,
) -> dict[str, tuple[ViewCell, ...]]:
    ordered = sorted(sessions, key=_session_order)
    if limit is not None:
        ordered = ordered[:limit]
    return {session_key(rec.node, rec.id): session_row(rec, now, compact=compact, columns=columns) for rec in ordered}


def costs_today_by_node(fleet: Fleet, day_start: float) -> dict[str, float]:
    """Cost of calls since the start of the day per node, from the fleet's recent call ring."""
    out: dict[str, float] = {}
    for call in fleet.calls_since(day_start):
        out[call.node] = out.get(call.node, 0.0) + call.cost_usd
    return out



def empty_state_lines(agent: AgentConfig, exists: Callable[[Path], bool], config_file: Path) -> list[str]:
    """What the console on this machine looked for, where, and how to turn each source on: shown
    while this machine has no session, so an empty table is not a mystery."""
    enabled = set(agent.sources)
    lines = ["No sessions on this machine yet. heady looked for:"]
    for source, roots in (("claude-code", agent.claude_code.roots), ("codex", agent.codex.roots)):
        if source not in enabled:
            lines.append(f"  {source}: off (add \"{source}\" to [agent] sources)")
            continue
        found = [root for root in roots if exists(Path(root).expanduser())]
        where = ", ".join(roots)
        lines.append(f"  {source}: {'found ' + ', '.join(found) if found else 'nothing at ' + where}")
    if "ingest" in enabled:
        lines.append(f"  opencode: listening for `opencode serve` at {agent.ingest.opencode_url}")
    else:
        lines.append('  opencode: off (add "ingest" to [agent] sources and run `opencode serve`)')
    lines.append(f"Sources are set in [agent] of {config_file} (see config.example.toml).")
    return lines
