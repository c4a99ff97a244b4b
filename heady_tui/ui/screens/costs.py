"""Costs: today, month, burn rate and projection, budgets, and cost by day / model / node /
project / session (`b` cycles the grouping)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from .. import formatting as fmt
from ..widgets.panels import budget_line
from ..widgets.spark import bar
from ..widgets.table import KeyedTable
from .base import LiveScreen

GROUPS = (("by_day", "day"), ("by_model", "model"), ("by_node", "node"), ("by_project", "project"), ("by_session", "session"))
COLUMNS = (("name", "Name"), ("cost", "Cost"), ("share", "Share"), ("bar", ""))


class CostsScreen(LiveScreen):
    VIEW = "costs"
    TITLE_TEXT = "Costs"

    def __init__(self, *, compact: bool) -> None:
        super().__init__(name="costs")
        self.compact = compact
        self.group = 1  # by model first: the usual question

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        summary = Static(id="cost-summary", classes="detail-info")
        summary.border_title = "Spend"
        yield summary
        yield KeyedTable(COLUMNS, id="cost-table")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#cost-table", KeyedTable).focus()
        self.refresh_view()

    def action_next_group(self) -> None:
        self.group = (self.group + 1) % len(GROUPS)
        self.query_one("#cost-table", KeyedTable).clear_rows()
        self.refresh_view()

    def refresh_view(self) -> None:
        app = self.heady
        summary = app.reader.cost_summary()
        table = self.query_one("#cost-table", KeyedTable)
        attr, label = GROUPS[self.group]
        table.border_title = f"Cost by {label}  (b: by {GROUPS[(self.group + 1) % len(GROUPS)][1]})"
        if summary is None:
            self.query_one("#cost-summary", Static).update("starting...")
            app.update_status(self)
            return
        width = 12 if self.compact else 24
        lines = [
            [(f"today {fmt.money(summary.today_usd)}   month {fmt.money(summary.month_usd)}   "
              f"burn {fmt.money(summary.burn_rate_usd_per_h)}/h   projected today {fmt.money(summary.projected_today_usd)}", None)],
            budget_line("daily budget  ", summary.today_usd, summary.daily_budget_usd, width, app.ascii_only),
            budget_line("monthly budget", summary.month_usd, summary.monthly_budget_usd, width, app.ascii_only),
            [(f"{summary.calls} calls priced with the table of {summary.pricing_date or '?'}", "muted")],
        ]
        if summary.unknown_models:
            lines.append([(f"unpriced models (cost 0): {', '.join(sorted(summary.unknown_models))}", "warning")])
        text = Text(end="")
        for i, line in enumerate(lines):
            if i:
                text.append("\n")
            for chunk, severity in line:
                text.append_text(app.cells({"c": ((chunk, severity),)})["c"][0] if severity else Text(chunk, end=""))
        self.query_one("#cost-summary", Static).update(text)
        values: dict[str, float] = getattr(summary, attr)
        total = sum(values.values()) or 1.0
        ordered = sorted(values.items(), key=(lambda kv: kv[0]) if attr == "by_day" else (lambda kv: -kv[1]))
        if attr == "by_day":
            ordered.reverse()
        rows = {}
        for name, cost in ordered[:500]:
            share = cost / total
            rows[name] = (Text(name, end=""), fmt.money(cost), f"{share * 100:.1f}%", bar(share, 20, ascii_only=app.ascii_only))
        table.sync(rows)
        app.update_status(self)
