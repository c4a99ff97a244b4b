"""Node detail: host facts, metric history, the per-process top list (focus on), its sessions,
and the node actions (drain, concurrency, pause, renice) sent through the operator layer (HeadyApp.send_command -> heady_tui.operator)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from .. import formatting as fmt
from .. import views
from ..modals.ask import AskModal, int_between
from ..widgets.spark import sparkline
from ..widgets.table import KeyedTable
from ..widgets.panels import show
from .base import LiveScreen

PROCESS_COLUMNS = (("pid", "PID"), ("name", "Process"), ("cpu", "CPU"), ("rss", "RSS"), ("session", "Session"))


class NodeScreen(LiveScreen):
    VIEW = "node"
    TITLE_TEXT = "Node"

    def __init__(self, node_id: str, *, compact: bool) -> None:
        super().__init__()
        self.node_id = node_id
        self.compact = compact
        self._session_columns = views.NODE_SESSION_COLUMNS_COMPACT if compact else views.NODE_SESSION_COLUMNS
        self.TITLE_TEXT = f"Node {node_id}"

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        info = Static(id="node-info", classes="detail-info")
        info.border_title = Text(f"Node {self.node_id}")
        yield info
        with Vertical(classes="split"):
            sessions = KeyedTable(self._session_columns, id="node-sessions", fit=views.NAME_COLUMNS)
            sessions.border_title = "Sessions"
            yield sessions
            procs = KeyedTable(PROCESS_COLUMNS, id="processes", fit=("name", "session"))
            procs.border_title = "Processes (top by CPU)"
            yield procs
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.heady.supervisor.focus(self.node_id, True)
        self.part("#node-sessions", KeyedTable).focus()
        self.refresh_view()

    def on_unmount(self) -> None:
        self.heady.supervisor.focus(self.node_id, False)

    def _info(self) -> Text:
        reader = self.heady.reader
        node = reader.fleet.nodes.get(self.node_id)
        if node is None:
            return Text("This node is no longer configured.", end="")
        now = reader.now()
        width = max(10, self.part("#node-info", Static).content_size.width - 22)
        ascii_only = self.heady.ascii_only
        text = Text(end="")
        status = f"{node.status} for {fmt.duration(now - node.since)}" if node.since else node.status
        text.append(f"{node.hostname or '?'}  {node.os}  agent {node.agent_version or '?'}  {node.cpu_count} cores  ")
        text.append(f"{node.mem_total / 2**30:.1f} GiB  ")
        text.append_text(self.heady.styled_text(status, views.STATUS_SEVERITY.get(node.status)))
        if node.last_error:
            text.append(f"  last error: {node.last_error}")
        text.append(f"\njournal {node.journal or '-'} seq {node.last_seq}")
        if node.journal_reset:
            text.append("  JOURNAL RESET", style="bold")
        if node.bad_events:
            text.append(f"  {node.bad_events} unreadable events")
        controls = self.heady.node_controls(self.node_id)
        if controls.drained:
            text.append("  DRAINED", style="bold")
        if controls.concurrency is not None:
            text.append(f"  concurrency {controls.concurrency}")
        labels = " ".join(f"{k}={v}" for k, v in sorted(node.labels.items()))
        if labels:
            text.append(f"  {labels}")
        metrics = node.metrics
        rows = [
            ("cpu %", node.cpu, fmt.percent(metrics.cpu if metrics else None), (0, 100)),
            ("mem %", node.mem, fmt.percent(metrics.mem if metrics else None), (0, 100)),
            ("load/core", node.load, "-" if node.utilisation is None else f"{node.utilisation:.2f}", (0, None)),
            ("queue", node.queue, str(node.queue_depth), (0, None)),
        ]
        for label, ring, current, (low, high) in rows[: 2 if self.compact else 4]:
            text.append(f"\n{label:<10}{current:>7} ")
            text.append(sparkline(ring.values(width), width, low=low, high=high, ascii_only=ascii_only))
        return text

    def refresh_view(self) -> None:
        reader = self.heady.reader
        show(self.part("#node-info", Static), self._info())
        now = reader.now()
        sessions = self.part("#node-sessions", KeyedTable)
        rows = views.session_rows(
            reader.fleet.node_sessions(self.node_id), now, compact=self.compact, columns=self._session_columns
        )
        sessions.sync(self.heady.cells(rows))
        procs = self.part("#processes", KeyedTable)
        detail = reader.node_detail(self.node_id)
        proc_rows: dict[str, tuple[str | Text, ...]] = {}
        for proc in sorted(detail, key=lambda p: -p.cpu)[:50]:
            proc_rows[str(proc.pid)] = (
                str(proc.pid),
                Text(proc.name, end=""),
                fmt.percent(proc.cpu, 1),
                f"{proc.rss / 2**20:.0f}M",
                proc.session or "-",
            )
        procs.sync(proc_rows)
        self.heady.update_status(self)

    def _selected_session(self) -> str | None:
        key = self.part("#node-sessions", KeyedTable).selected_key
        if key is None:
            self.notify("select a session first", severity="warning")
            return None
        return views.split_session_key(key)[1]

    def open_row(self, table: KeyedTable, key: str) -> None:
        if table.id == "node-sessions":
            node, session_id = views.split_session_key(key)
            self.heady.open_session(node, session_id)
        else:
            super().open_row(table, key)

    def action_drain(self) -> None:
        node = self.node_id

        def drain() -> None:
            self.heady.send_command(node, "node.drain")

        self.heady.confirm_then(
            f"Drain {node}?", f"{node} stops starting queued work until undrained.", drain, label="Drain"
        )

    def action_undrain(self) -> None:
        self.heady.send_command(self.node_id, "node.undrain")

    def action_concurrency(self) -> None:
        node = self.node_id
        current = self.heady.node_controls(node).concurrency
        shown = "not set from this console" if current is None else str(current)

        def answered(value: str | None) -> None:
            if value is not None:
                self.heady.send_command(node, "node.set_concurrency", None, {"value": int(value)})

        self.app.push_screen(
            AskModal(f"Concurrency on {node}", f"Managed sessions that may run at once (0 stops new ones; now {shown}):",
                     value="" if current is None else str(current), validate=int_between(0, 10_000)),
            callback=answered,
        )

    def action_pause_session(self) -> None:
        session = self._selected_session()
        if session is None:
            return
        node = self.node_id

        def pause() -> None:
            self.heady.send_command(node, "session.pause", session)

        self.heady.confirm_then(f"Pause session {session}?", f"Session {session} on {node} is stopped (SIGSTOP) until resumed.", pause, label="Pause")

    def action_renice_session(self) -> None:
        session = self._selected_session()
        if session is None:
            return
        node = self.node_id

        def answered(value: str | None) -> None:
            if value is not None:
                self.heady.send_command(node, "session.renice", session, {"nice": int(value)})

        self.app.push_screen(
            AskModal(f"Renice {session}", "Nice value, -20 (first) to 19 (last):", value="10", validate=int_between(-20, 19)),
            callback=answered,
        )
