"""Audit: the newest entries of the hash-chained trail and whether the chain verifies (`v`)."""

from __future__ import annotations

import json

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Static

from .. import formatting as fmt
from ..widgets.table import KeyedTable
from ..widgets.panels import show
from .base import LiveScreen

COLUMNS = (
    ("seq", "#"),
    ("time", "Time (UTC)"),
    ("actor", "Actor"),
    ("action", "Action"),
    ("details", "Details"),
    ("hash", "Hash"),
)
ENTRIES = 200
# The table cuts details to its width; `enter` shows the cell, so it keeps this much (a plan's worth).
DETAILS_CHARS = 4000
RELOAD_S = 2.0  # the entries come from the database; fleet changes are far more frequent than audit ones


class AuditScreen(LiveScreen):
    VIEW = "audit"
    TITLE_TEXT = "Audit"
    SHOWS_AGES = False  # absolute times only

    def __init__(self, *, compact: bool) -> None:
        super().__init__(name="audit")
        self.compact = compact
        self._loaded_at: float | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        verdict = Static("verifying...", id="audit-verdict", classes="detail-info")
        verdict.border_title = "Chain"
        yield verdict
        table = KeyedTable(COLUMNS, id="audit-entries", fit=("actor", "details"))
        table.border_title = "Entries (newest first)"
        yield table
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.part("#audit-entries", KeyedTable).focus()
        self.action_verify()
        self.refresh_view()

    def refresh_view(self) -> None:
        now = self.heady.supervisor.clock.monotonic()
        if self._loaded_at is None or now - self._loaded_at >= RELOAD_S:
            self._loaded_at = now
            self._load()
        self.heady.update_status(self)

    @work(exclusive=True, group="audit", exit_on_error=False, description="loading the audit log")
    async def _load(self) -> None:
        brain = self.heady.supervisor.brain
        if brain is None:
            return
        entries = await brain.audit_entries(ENTRIES)
        rows = {}
        for entry in sorted(entries, key=lambda e: -e.seq):
            details = json.dumps(entry.details, sort_keys=True, separators=(",", ":"), default=str)
            rows[str(entry.seq)] = (
                str(entry.seq),
                fmt.date_time(entry.ts),
                Text(entry.actor, end=""),
                entry.action,
                Text(details[:DETAILS_CHARS], end=""),
                entry.hash[:12],
            )
        self.part("#audit-entries", KeyedTable).sync(rows)

    @work(exclusive=True, group="audit-verify", exit_on_error=False, description="verifying the audit chain")
    async def action_verify(self) -> None:
        brain = self.heady.supervisor.brain
        if brain is None:
            return
        result = await brain.verify_audit()
        anchor = f"anchor {result.anchor.head.count} entries" if result.anchor else "no anchor yet"
        verdict = "VERIFIED" if result.ok else "BROKEN"
        line = f"{verdict}: {result.entries} entries, head {result.head.hash[:16]}, {anchor}."
        if not result.ok:  # an ok message repeats the count and head
            line += f" {result.message}"
        show(
            self.part("#audit-verdict", Static),
            self.heady.cells({"v": ((line, "ok" if result.ok else "critical"),)})["v"][0]
        )
