"""What each table and panel shows, computed from the fleet and the brain: no Textual here.

A view cell is (text, severity or None); widgets colour it from the theme. Keeping the choice of
rows, order and severity here lets tests read it without a terminal and keeps widgets thin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from heady_agent.config import AgentConfig

from ..fleet import SPARKLINE_WINDOW_S, UNKNOWN_STATE, WAITING_STATE, Fleet, NodeState, SessionRecord
from ..engine.rebalance import RebalanceStatus
from ..ledger import PRIORITY_BY_OPERATOR
from . import formatting as fmt
from .widgets.spark import sparkline

ViewCell = tuple[str, str | None]

STATE_SEVERITY = {
    "running": "ok",
    "idle": "careful",
    "waiting": "warning",
    "compacted": "careful",
    "paused": "warning",
    "error": "critical",
    "completed": None,
    "unknown": "warning",
}
# The last frame's age turns amber past this share of the node's liveness timeout, red past it.
STALE_FRACTION = 0.5
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
    ("seen", "Seen"),
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
    ("seen", "Seen"),
)

# What changes while a session runs (state, age, cost, tokens) comes first and the names after it:
# a terminal update rewrites a table line from its left edge to the changed cell (Textual's partial
# update), so a changing cell far right costs a whole line of bytes over SSH on every repaint.
SESSION_COLUMNS = (
    ("node", "Node"),
    ("state", "State"),
    ("age", "Age"),
    ("cost", "Cost"),
    ("tokens", "Tokens"),
    ("session", "Session"),
    ("project", "Project"),
    ("model", "Model"),
    ("priority", "Prio"),
    ("source", "Source"),
)
SESSION_COLUMNS_COMPACT = (
    ("node", "Node"),
    ("state", "State"),
    ("age", "Age"),
    ("cost", "Cost"),
    ("session", "Session"),
    ("project", "Project"),
    ("model", "Model"),
    ("priority", "Prio"),
)
# Columns of names an agent chooses (any length): they share what the other columns leave of the width.
NAME_COLUMNS = ("node", "session", "source", "project", "model")
SPARK_COLUMNS = ("cpu_spark", "mem_spark")  # newest at the right: a narrow table drops their oldest points
# On a node's own screen the node column says nothing; its width goes to tokens, cost and how often
# each session's context was compacted.
NODE_SESSION_COLUMNS = (
    *(column for column in SESSION_COLUMNS if column[0] not in ("node", "source")),
    ("compactions", "Compacted"),
)
# At 80 columns the model and class give way (the session screen shows both).
NODE_SESSION_COLUMNS_COMPACT = tuple(column for column in NODE_SESSION_COLUMNS if column[0] not in ("model", "priority"))


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


def frame_age_severity(age: float | None, timeout_s: float | None) -> str | None:
    """The last frame's age: amber from half the node's timeout, red from the timeout (offline)."""
    if age is None or timeout_s is None:
        return None
    if age >= timeout_s:
        return "critical"
    if age >= timeout_s * STALE_FRACTION:
        return "warning"
    return None


def _seen_cell(node: NodeState, now: float) -> ViewCell:
    age = None if node.last_frame_at is None else max(0.0, now - node.last_frame_at)
    return (fmt.duration(age), frame_age_severity(age, node.timeout_s))


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
    # A silent node's last readings are not its current ones: shown as unknown.
    metrics = None if node.stale else node.metrics
    cpu = metrics.cpu if metrics else None
    mem = metrics.mem if metrics else None
    load = None if node.stale else node.utilisation
    cells: dict[str, ViewCell] = {
        "node": (node.id, None),
        "status": _status_text(node, now),
        "cpu": (fmt.percent(cpu), fmt.percent_severity(cpu) if cpu is not None else None),
        "cpu_spark": (sparkline(node.recent(node.cpu, SPARKLINE_WINDOW_S, spark_width), spark_width, low=0, high=100,
                                ascii_only=ascii_only), "careful"),
        "mem": (fmt.percent(mem), fmt.percent_severity(mem) if mem is not None else None),
        "mem_spark": (sparkline(node.recent(node.mem, SPARKLINE_WINDOW_S, spark_width), spark_width, low=0, high=100,
                                ascii_only=ascii_only), "careful"),
        "load": ("-" if load is None else f"{load:.2f}", None if load is None else fmt.percent_severity(load * 100)),
        "sessions": (str(sessions), None),
        "queue": ("-" if node.stale else str(node.queue_depth), None),
        "cost": (fmt.money(cost_today), None),
        "seen": _seen_cell(node, now),
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
            if rec.live:
                counts[rec.node] = counts.get(rec.node, 0) + 1
        rows = {}
        for node_id in sorted(fleet.nodes):
            node = fleet.nodes[node_id]
            sessions = counts.get(node_id, 0)
            cost = costs_today.get(node_id)
            stamp = (node.last_seq, len(node.cpu), node.status, node.journal, _since_text(node, now), _seen_cell(node, now), sessions,
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


def _state_text(rec: SessionRecord, now: float) -> str:
    # `unknown` alone would not say why; the reason (node offline) is part of the state shown.
    if rec.state == UNKNOWN_STATE and rec.state_reason:
        return f"{rec.state} ({rec.state_reason})"
    if rec.state == WAITING_STATE and rec.live:  # what for, and how long the person has kept it waiting
        return f"waiting {rec.state_reason or '?'} {fmt.duration(now - rec.state_since)}"
    return rec.state


def session_label(rec: SessionRecord) -> str:
    """A session's title when it has one, else its id (the table cuts it to the width it has)."""
    return rec.title or rec.id


def session_row(
    rec: SessionRecord, now: float, *, compact: bool, columns: tuple[tuple[str, str], ...] | None = None
) -> tuple[ViewCell, ...]:
    age = None if rec.started is None else (rec.ended or now) - rec.started
    cost = fmt.money(rec.cost_usd) + ("?" if rec.cost_unknown else "")
    cells: dict[str, ViewCell] = {
        "node": (rec.node, None),
        "session": (session_label(rec), None),
        "source": (rec.source or "-", None),
        "project": (rec.project or "-", None),
        "model": (rec.model or "-", None),
        "state": (_state_text(rec, now), STATE_SEVERITY.get(rec.state)),
        # An operator's choice is marked, so a class the rules would not give is recognisable.
        "priority": (rec.priority + ("*" if rec.priority_by == PRIORITY_BY_OPERATOR else ""), None),
        "age": (fmt.duration(age), None),
        "tokens": (fmt.tokens(rec.tokens), None),
        "cost": (cost, None),
        "compactions": (str(rec.compactions), None),
    }
    shown = columns or (SESSION_COLUMNS_COMPACT if compact else SESSION_COLUMNS)
    return tuple(cells[key] for key, _ in shown)


def _session_order(rec: SessionRecord) -> tuple:
    # Sessions waiting for a person first (the longest wait on top), then live ones, then the most
    # expensive: what an operator looks for.
    waiting = rec.live and rec.state == WAITING_STATE
    return (not waiting, rec.state_since if waiting else 0.0, not rec.live, not rec.active, -rec.cost_usd, rec.node, rec.id)


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
    if enabled & {"opencode", "ingest"}:
        lines.append(f"  opencode: following `opencode serve` at {agent.opencode.opencode_url} and {agent.opencode.resolve_db_path()}")
    else:
        lines.append('  opencode: off (add "opencode" to [agent] sources)')
    lines.append(f"Sources are set in [agent] of {config_file} (see config.example.toml).")
    return lines


def rebalance_line(run: RebalanceStatus | None, balanced_checks: int) -> tuple[str, str | None]:
    """The equilibrium panel's line about the current or last rebalance run."""
    if run is None:
        return ("no rebalance run yet", None)
    if run.watching_for_balance:
        until = fmt.clock_time(run.started_at + run.plan.caps.max_duration_s)
        return (f"rebalance {run.run_id}: {run.steps_total} steps done, watching for balance "
                f"({run.balanced_streak}/{balanced_checks} balanced checks, stops by {until} at the latest)", "warning")
    if run.state == "running":
        return (f"rebalance {run.run_id}: step {run.steps_done}/{run.steps_total}, {run.priority}", "warning")
    restored = "balance restored" if run.restored else "not restored"
    return (f"last rebalance {run.run_id}: {run.reason_stopped}, {restored}, {run.reverted} reverted", "muted")
