"""Permissions: the rebalancing grants (scope, grantor, expiry, uses, status); revoke with
confirmation (`x`); `i` shows spent, expired and revoked grants too."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from ...engine.consent import Grant
from ...report import kpi_text
from .. import formatting as fmt
from ..widgets.table import KeyedTable
from ..widgets.panels import show
from .base import LiveScreen

COLUMNS = (
    ("id", "Grant"),
    ("scope", "Scope"),
    ("status", "Status"),
    ("grantor", "Grantor"),
    ("created", "Created"),
    ("expires", "Expires"),
    ("uses", "Uses"),
    ("reason", "Reason"),
)
KPI_WINDOW_S = 7 * 86400  # the KPI panel's range, as `heady kpis`' default
STATUS_SEVERITY = {"active": "ok", "spent": "muted", "expired": "muted", "revoked": "careful"}


class PermissionsScreen(LiveScreen):
    VIEW = "permissions"
    TITLE_TEXT = "Permissions"

    def __init__(self, *, compact: bool) -> None:
        super().__init__(name="permissions")
        self.compact = compact
        self.include_inactive = False
        self._grants: dict[str, Grant] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        note = Static(id="permissions-note", classes="detail-info")
        note.border_title = "Rebalancing permission"
        yield note
        table = KeyedTable(COLUMNS, id="grants", fit=("scope", "reason"))
        table.border_title = "Grants"
        yield table
        kpis = Static(id="kpis", classes="detail-info")
        kpis.border_title = "Rebalancing KPIs (last 7 days)"
        yield kpis
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.part("#grants", KeyedTable).focus()
        self.refresh_view()

    def refresh_view(self) -> None:
        self._show_grants()
        self.run_worker(self._show_kpis(), exclusive=True, group="kpis")
        self.heady.update_status(self)

    async def _show_kpis(self) -> None:
        brain = self.heady.supervisor.brain
        if brain is None:
            return
        now = self.heady.reader.now()
        lines = []
        for k in await brain.rebalance_kpis(now - KPI_WINDOW_S, now):
            target = kpi_text(k.target, k.unit, ">=" if k.direction == "min" else "<=")
            mark = {True: "ok", False: "MISSED", None: "-"}[k.met]
            lines.append(f"{k.name:<26} {kpi_text(k.value, k.unit):>8}  target {target:<9} {mark}")
        self.part("#kpis", Static).update(Text("\n".join(lines)))

    def _show_grants(self) -> None:
        brain = self.heady.supervisor.brain
        if brain is None:
            return
        grants = brain.grants(include_inactive=self.include_inactive)
        now = self.heady.reader.now()
        self._grants = {g.id: g for g in grants}
        rows = {}
        for g in sorted(grants, key=lambda g: -g.created):
            status = g.status(now)
            uses = f"{g.uses}/{g.max_uses}" if g.max_uses is not None else str(g.uses)
            rows[g.id] = self.heady.cells(
                {
                    g.id: (
                        (g.id, None),
                        (g.scope, None),
                        (status, STATUS_SEVERITY.get(status)),
                        (g.grantor, None),
                        (fmt.date_time(g.created), None),
                        ("until revoked" if g.expires is None else fmt.date_time(g.expires), None),
                        (uses, None),
                        (g.reason, None),
                    )
                }
            )[g.id]
        self.part("#grants", KeyedTable).sync(rows)
        active = sum(1 for g in grants if g.status(now) == "active")
        scope = "all grants" if self.include_inactive else "active grants (i: show all)"
        show(
            self.part("#permissions-note", Static),
            f"{active} active. The rebalancer runs only under an active grant; revoking one stops new runs.\n"
            f"Showing {scope}."
        )

    def action_toggle_inactive(self) -> None:
        self.include_inactive = not self.include_inactive
        self.refresh_view()

    def action_revoke(self) -> None:
        key = self.part("#grants", KeyedTable).selected_key
        grant = self._grants.get(key) if key else None
        if grant is None:
            self.notify("select a grant first", severity="warning")
            return
        grant_id = grant.id

        def revoke() -> None:
            self.heady.act(f"revoke grant {grant_id}", lambda: self.heady.operator.revoke_grant(grant_id),
                           f"grant {grant_id} revoked")

        self.heady.confirm_then(
            f"Revoke grant {grant_id}?",
            f"{grant.scope} grant by {grant.grantor}: {grant.reason}\nThe rebalancer will ask again next time.",
            revoke,
            label="Revoke",
        )
