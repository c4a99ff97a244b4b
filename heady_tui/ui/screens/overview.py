"""The default screen: equilibrium header, nodes, sessions, costs and the live event log."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from ...fleet import SPARKLINE_WIDTH, SPARKLINE_WIDTH_COMPACT
from .. import views
from ..widgets.panels import CostPanel, EquilibriumPanel, EventLog, set_title, show
from ..widgets.table import KeyedTable
from .base import LiveScreen

# The overview lists at most this many sessions (live first, then by cost); the session count in
# the table title says how many there are. The full list is one filter away.
SESSION_ROWS = 300


class OverviewScreen(LiveScreen):
    VIEW = "overview"
    TITLE_TEXT = "Overview"

    def __init__(self, *, compact: bool) -> None:
        super().__init__(name="overview")
        self.compact = compact

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield EquilibriumPanel(id="equilibrium")
        empty = Static(id="empty-state", classes="panel")
        empty.border_title = "This machine"
        empty.display = False
        yield empty
        with Vertical(id="overview-body"):
            with Vertical(id="overview-tables"):
                nodes = KeyedTable(views.NODE_COLUMNS_COMPACT if self.compact else views.NODE_COLUMNS, id="nodes", fit=views.NAME_COLUMNS,
                                   trail=views.SPARK_COLUMNS)
                nodes.border_title = "Nodes"
                yield nodes
                sessions = KeyedTable(
                    views.SESSION_COLUMNS_COMPACT if self.compact else views.SESSION_COLUMNS, id="sessions",
                    fit=views.NAME_COLUMNS,
                )
                sessions.border_title = "Sessions"
                yield sessions
            with Vertical(id="overview-side"):
                costs = CostPanel(id="costs")
                costs.border_title = "Cost"
                yield costs
                log = EventLog(id="events")
                log.border_title = "Events"
                yield log
        yield from self.compose_footer()

    def on_mount(self) -> None:
        log = self.part("#events", EventLog)
        for event in self.heady.recent_events[-200:]:
            log.add(event)
        self.part("#nodes", KeyedTable).focus()
        self.refresh_view()

    def refresh_view(self) -> None:
        app = self.heady
        reader = app.reader
        now = reader.now()
        nodes = self.part("#nodes", KeyedTable)
        sessions = self.part("#sessions", KeyedTable)
        # As wide as the table leaves room for, up to the usual width: a narrow sparkline spans the
        # same minute in fewer, wider slices.
        spark = SPARKLINE_WIDTH if not self.compact else SPARKLINE_WIDTH_COMPACT
        spark = min(spark, nodes.trail_room or spark)
        nodes.sync(app.cells(reader.node_rows(spark_width=spark, compact=self.compact)))
        set_title(nodes, f"Nodes ({reader.online_count()}/{len(reader.fleet.nodes)} online)")
        session_filter = sessions.filter_text
        records = list(reader.fleet.sessions.values())
        if session_filter:
            # Filter before the row limit so a match beyond the first rows is still found.
            records = [r for r in records if reader.session_matches(r, session_filter)]
        rows = views.session_rows(records, now, compact=self.compact, limit=SESSION_ROWS)
        sessions.sync(app.cells(rows), filtered=True, total=len(reader.fleet.sessions))  # matched on every field, the id included
        live, unknown = reader.session_counts()
        title = f"Sessions ({live} live, " + (f"{unknown} unknown, " if unknown else "") + f"{len(reader.fleet.sessions)} total"
        if len(reader.fleet.sessions) > SESSION_ROWS and not session_filter:
            title += f"; first {SESSION_ROWS} shown, / finds the rest"
        set_title(sessions, title + ")")
        self._show_empty_state()
        panel = self.part("#equilibrium", EquilibriumPanel)
        panel.show(reader.level(), reader.metric_lines(), compact=self.compact, ascii_only=app.ascii_only)
        set_title(panel, reader.rebalance_line()[0], subtitle=True)
        self.part("#costs", CostPanel).show(reader.cost_lines(compact=self.compact, ascii_only=app.ascii_only))
        app.update_status(self)

    def _show_empty_state(self) -> None:
        """On this machine (no [[nodes]], not a demo) with no session yet: which sources were
        looked for where, and how to turn them on."""
        app = self.heady
        reader = app.reader
        wanted = not app.config.nodes and not reader.simulated and not reader.fleet.sessions
        empty = self.part("#empty-state", Static)
        if wanted:
            show(empty, Text("\n".join(views.empty_state_lines(app.config.agent, Path.exists, app.supervisor.paths.config_file))))
        if empty.display != wanted:
            empty.display = wanted

    def open_row(self, table: KeyedTable, key: str) -> None:
        if table.id == "nodes":
            self.heady.open_node(key)
        elif table.id == "sessions":
            node, session_id = views.split_session_key(key)
            self.heady.open_session(node, session_id)
        else:
            super().open_row(table, key)
