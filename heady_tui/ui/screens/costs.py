"""Costs: today, month, burn rate and projection, budgets, each account's 5-hour and weekly
limits across the fleet (Accounts), and cost by day / model / node / project / session. Wide terminals show every grouping at once; compact ones one at a time
(`b` cycles). With `[cost.providers]` keys configured, cost by day and by model carry a second
column, what the providers billed (asked in the background every `refresh_s`)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Static

from heady_tui.accounts import COLUMNS as ACCOUNT_COLUMNS
from heady_tui.accounts import AccountWindow, window_cells

from .. import formatting as fmt
from ..widgets.panels import budget_line, set_title, show
from ..widgets.spark import bar
from ..widgets.table import KeyedTable
from .base import LiveScreen

GROUPS = (("by_model", "model"), ("by_node", "node"), ("by_project", "project"), ("by_day", "day"), ("by_session", "session"))
COLUMNS = (("name", "Name"), ("cost", "Cost"), ("share", "Share"), ("bar", ""))
PROVIDER_COLUMNS = (("name", "Name"), ("cost", "From tokens"), ("provider", "From provider"), ("share", "Share"), ("bar", ""))
RECONCILED = ("by_model", "by_day")  # the groupings the providers report
ROWS = 500
USED_CELL = ACCOUNT_COLUMNS.index("used")
RESETS_CELL = ACCOUNT_COLUMNS.index("resets")
# At 80 columns the figures alone fill the width: the account keeps room by leaving out the machines
# and their session count (`enter` on a wide terminal, `heady accounts` or the report show them).
ACCOUNT_COLUMNS_COMPACT = tuple(name for name in ACCOUNT_COLUMNS if name not in ("nodes", "sessions"))


class CostsScreen(LiveScreen):
    VIEW = "costs"
    TITLE_TEXT = "Costs"

    def __init__(self, *, compact: bool) -> None:
        super().__init__(name="costs")
        self.compact = compact
        self.group = 0  # compact layout: the grouping shown

    @property
    def with_provider(self) -> bool:
        return self.heady.billing.configured

    def _provider_column(self, attr: str) -> bool:
        # Wide: only the groupings the providers report; compact: the one table serves every grouping.
        return self.with_provider and (self.compact or attr in RECONCILED)

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        summary = Static(id="cost-summary", classes="detail-info")
        summary.border_title = "Spend"
        yield summary
        shown = ACCOUNT_COLUMNS_COMPACT if self.compact else ACCOUNT_COLUMNS
        accounts = KeyedTable(tuple((name, name.capitalize()) for name in shown), id="cost-accounts", fit=("account", "nodes"))
        accounts.border_title = "Accounts"
        yield accounts
        if self.compact:
            yield KeyedTable(PROVIDER_COLUMNS if self.with_provider else COLUMNS, id="cost-table", fit=("name",))
        else:
            with Grid(id="cost-grid"):
                for attr, label in GROUPS:
                    columns = PROVIDER_COLUMNS if self._provider_column(attr) else COLUMNS
                    table = KeyedTable(columns, id=f"cost-{attr}", fit=("name",))
                    table.border_title = f"Cost by {label}"
                    yield table
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query(KeyedTable).first().focus()
        self.refresh_view()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        self.heady.ask_providers_if_due()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_group" and not self.compact:
            return False  # every grouping is already on screen
        return super().check_action(action, parameters)

    def action_next_group(self) -> None:
        self.group = (self.group + 1) % len(GROUPS)
        self.part("#cost-table", KeyedTable).clear_rows()
        self.refresh_view()

    def _summary(self, summary) -> Text:
        app = self.heady
        width = 12 if self.compact else 24
        lines: list[list[tuple[str, str | None]]] = [
            [(f"today {fmt.money(summary.today_usd)}   month {fmt.money(summary.month_usd)}   "
              f"burn {fmt.money(summary.burn_rate_usd_per_h)}/h   projected today {fmt.money(summary.projected_today_usd)}", None)],
            budget_line("daily budget  ", summary.today_usd, summary.daily_budget_usd, width, app.ascii_only),
            budget_line("monthly budget", summary.month_usd, summary.monthly_budget_usd, width, app.ascii_only),
            [(f"{summary.calls} calls priced with the table of {summary.pricing_date or '?'}", "muted")],
        ]
        if summary.unknown_models:
            lines.append([(f"unpriced models (cost 0): {', '.join(sorted(summary.unknown_models))}", "warning")])
        lines += [[line] for line in app.billing.status_lines()]
        text = Text(end="")
        for i, line in enumerate(lines):
            if i:
                text.append("\n")
            for chunk, severity in line:
                text.append_text(app.styled_text(chunk, severity))
        return text

    def _rows(self, attr: str, values: dict[str, float]) -> dict[str, tuple]:
        """Rows of one grouping; with the provider column, keys only a provider reported are listed too."""
        billed: dict[str, float | None] | None = None
        if self._provider_column(attr):
            billed = {}
            if attr in RECONCILED:
                billing = self.heady.billing
                reconciled = billing.by_day(values) if attr == "by_day" else billing.by_model(values)
                billed = {row.key: row.from_provider_usd for row in reconciled}
                values = {row.key: row.from_tokens_usd for row in reconciled}
        total = sum(values.values()) or 1.0
        if attr == "by_day":
            ordered = sorted(values.items(), reverse=True)  # newest day first
        else:
            ordered = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
        rows = {}
        for name, cost in ordered[:ROWS]:
            share = cost / total
            cells: tuple = (Text(name, end=""), fmt.money(cost))
            if billed is not None:
                provider = billed.get(name)
                cells += ("" if attr not in RECONCILED else fmt.money(provider),)
            rows[name] = cells + (f"{share * 100:.1f}%", bar(share, 16, ascii_only=self.heady.ascii_only))
        return rows

    def _account_rows(self, windows: list[AccountWindow]) -> dict[str, tuple[Text, ...]]:
        """One row per account and window; the used share coloured by the limit_guard's shares."""
        guard = self.heady.config.policies.limit_guard
        now = self.heady.reader.now()
        shown = [ACCOUNT_COLUMNS.index(name) for name in (ACCOUNT_COLUMNS_COMPACT if self.compact else ACCOUNT_COLUMNS)]
        rows = {}
        for w in windows:
            share = (w.used_percent or 0.0) / 100.0
            severity = "critical" if share >= guard.pause_share else "warning" if share >= guard.warn_share else None
            cells = [Text(cell, end="") for cell in window_cells(w)]  # agent-named accounts: never markup
            cells[USED_CELL] = self.heady.styled_text(cells[USED_CELL].plain, severity)
            if w.resets_at is not None:  # on screen, how long until then (the CLI and report give the time)
                cells[RESETS_CELL] = Text(f"in {fmt.duration(w.resets_at - now)}", end="")
            rows[f"{w.account}\0{w.window}"] = tuple(cells[i] for i in shown)
        return rows

    def refresh_view(self) -> None:
        app = self.heady
        self.part("#cost-accounts", KeyedTable).sync(self._account_rows(app.reader.accounts()))
        summary = app.reader.cost_summary()
        if summary is None:
            show(self.part("#cost-summary", Static), "starting...")
            app.update_status(self)
            return
        show(self.part("#cost-summary", Static), self._summary(summary))
        if self.compact:
            attr, label = GROUPS[self.group]
            table = self.part("#cost-table", KeyedTable)
            set_title(table, f"Cost by {label}  (b: by {GROUPS[(self.group + 1) % len(GROUPS)][1]})")
            table.sync(self._rows(attr, getattr(summary, attr)))
        else:
            for attr, _ in GROUPS:
                self.part(f"#cost-{attr}", KeyedTable).sync(self._rows(attr, getattr(summary, attr)))
        app.update_status(self)
