"""The account windows the brain derived, read by the Costs screen's Accounts section, the report's
Accounts section (JSON, Markdown, HTML) and `heady accounts [--json]`: the same figures everywhere."""

from __future__ import annotations

import json
from pathlib import Path

from heady_tui.alerts import classify
from heady_tui.accounts import FIVE_HOUR, WEEK, AccountWindow, window_cells
from heady_tui.config import Config, Paths
from heady_tui.engine.cost import PricingTable
from heady_tui.events import HeadyEvent
from heady_tui.records import Records
from heady_tui.report import gather_report, render
from heady_tui.store import Store
from heady_tui.ui import formatting as fmt
from heady_tui.ui.samplefleet import CLAUDE_ACCOUNT, CODEX_ACCOUNT
from heady_tui.ui.widgets.table import KeyedTable
from ledgerkit import heady
from heady_agent.protocol import Event
from test_ui_consent import dialog
from uikit import fast_config, fixed_console, wait_until

T0 = 1_800_057_600.0
HOSTILE = "claude:[bold]ana[/bold]@example.com"
WINDOWS = [
    AccountWindow(CODEX_ACCOUNT, FIVE_HOUR, "official", 46.0, 3.5, None, 12.0, T0 + 54 / 12 * 3600, T0 + 7200,
                  ("n1", "n2"), 3, "pro", T0),
    AccountWindow(HOSTILE, WEEK, "estimate", 25.0, 5.0, 20.0, None, None, T0 + 86400, ("n1",), 1, None, T0),
]


async def stored_windows(tmp_path: Path) -> Paths:
    paths = Paths(tmp_path / "config.toml", tmp_path / "data")
    store = await Store.open(paths.database, pricing=PricingTable.load(Config().cost))
    records = await Records.open(store, paths.audit_anchor)
    await records.save_account_windows(WINDOWS)
    await store.close()
    return paths


def test_a_windows_row_says_its_basis_share_spend_burn_time_to_the_limit_and_reset():
    assert window_cells(WINDOWS[0]) == [CODEX_ACCOUNT, "5h", "official", "46%", "$3.50", "12.0%/h", "after reset",
                                        "2027-01-16 02:00Z", "n1,n2", "3"]
    assert window_cells(WINDOWS[1])[3:7] == ["25%", "$5.00 of $20.00", "-", "-"]


async def test_the_cli_lists_the_stored_windows_and_their_json(tmp_path):
    paths = await stored_windows(tmp_path)
    config = tmp_path / "cli.toml"
    config.write_text("")
    code, out, err = await heady(tmp_path, "accounts", "--json", "--config", str(config), "--data-dir", str(paths.data_dir))
    assert (code, err) == (0, "")
    assert json.loads(out) == {"accounts": [w.to_dict() for w in WINDOWS]}
    code, out, err = await heady(tmp_path, "accounts", "--config", str(config), "--data-dir", str(paths.data_dir))
    header, *rows = out.splitlines()
    assert code == 0 and header.split() == ["account", "window", "basis", "used", "spent", "burn", "limit", "in", "resets",
                                            "nodes", "sessions"]
    assert [row.split()[:4] for row in rows] == [[CODEX_ACCOUNT, "5h", "official", "46%"], [HOSTILE, "week", "estimate", "25%"]]


async def test_the_cli_says_when_there_are_no_windows_yet(tmp_path):
    config = tmp_path / "cli.toml"
    config.write_text("")
    code, out, _ = await heady(tmp_path, "accounts", "--config", str(config), "--data-dir", str(tmp_path / "empty"))
    assert code == 0 and out.startswith("no account windows yet")


async def test_the_report_has_an_accounts_section_in_every_format(tmp_path):
    paths = await stored_windows(tmp_path)
    store = await Store.open(paths.database)
    try:
        report = await gather_report(store, Config(), paths, since=T0 - 86400, until=T0, now=T0)
    finally:
        await store.close()
    assert [(a.account, a.window, a.basis, a.used_percent, a.resets_at) for a in report.accounts] == [
        (CODEX_ACCOUNT, "5h", "official", 46.0, "2027-01-16T02:00:00.000Z"), (HOSTILE, "week", "estimate", 25.0, "2027-01-17T00:00:00.000Z")]
    assert json.loads(render(report, "json"))["accounts"][0]["burn_percent_per_h"] == 12.0
    markdown = render(report, "md")
    assert "## Accounts" in markdown and "| openai:team@example.com | 5h | official | 46% |" in markdown
    assert "\\[bold\\]ana\\[/bold\\]" in markdown  # agent text stays literal
    page = render(report, "html")
    assert '<h2 id="accounts">Accounts</h2>' in page and "<td>after reset</td>" in page


async def accounts_table(app, pilot, clock) -> KeyedTable:
    """The costs screen's Accounts table once the brain has derived the four windows."""
    clock.advance(app.config.limits.refresh_s)
    await app.supervisor.brain.tick()
    await pilot.press("2")
    await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "costs" and app.screen.is_mounted, "the costs screen")
    app.refresh_now(force=True)
    table = app.screen.query_one("#cost-accounts", KeyedTable)
    await wait_until(pilot, lambda: table.row_count == 4, "four account windows")
    return table


async def test_the_costs_screen_shows_each_accounts_windows_official_and_estimated(tmp_path):
    async with fixed_console(tmp_path, size=(160, 50)) as (app, pilot, clock):
        table = await accounts_table(app, pilot, clock)
        assert str(table.cell(f"{CODEX_ACCOUNT}\0{FIVE_HOUR}", "basis")) == "official"
        assert str(table.cell(f"{CLAUDE_ACCOUNT}\0{FIVE_HOUR}", "basis")) == "estimate"
        codex = next(w for w in app.reader.accounts() if w.account == CODEX_ACCOUNT and w.window == FIVE_HOUR)
        assert str(table.cell(f"{CODEX_ACCOUNT}\0{FIVE_HOUR}", "used")) == window_cells(codex)[3]


def test_an_accounts_notice_alerts_with_its_window_basis_and_reset():
    alert = classify(HeadyEvent("budget.notice", T0, {
        "budget": f"account {CODEX_ACCOUNT} 5h", "percent": 85.0, "spent_usd": 3.5, "budget_usd": None, "account": CODEX_ACCOUNT,
        "window": "5h", "basis": "official", "resets_at": "2027-01-16T02:00:00.000Z"}))
    assert alert is not None and alert.severity == "warning"
    assert alert.title == f"account {CODEX_ACCOUNT}: 5h window 85% used (official)"
    assert alert.lines == ("resets at 2027-01-16T02:00:00.000Z", "spent by the fleet in the window: $3.50")


def test_a_pause_request_alerts_as_a_pause_not_a_rebalance():
    alert = classify(HeadyEvent("consent.requested", T0, {"request": "r-1", "reason": "account full", "priority": "high",
                                                          "actions": ["pause n1/s1"], "topic": f"limit_guard:{CODEX_ACCOUNT}"}))
    assert alert is not None and alert.title == "permission to pause an account's sessions requested: account full"


async def test_the_consent_dialog_asks_to_pause_the_account_and_an_allow_pauses_its_sessions(tmp_path):
    async with fixed_console(tmp_path, config=fast_config()) as (app, pilot, clock):
        sup = app.supervisor
        node = sup.fleet.nodes["build-1"]
        full = Event(journal=node.journal, seq=node.last_seq + 1, ts=clock.now(), kind="session.limits", session="bu000-s1",
                     data={"primary": {"used_percent": 100.0, "window_minutes": 300, "resets_at": clock.now() + 3600}})
        await sup.link_frames("build-1", node.journal, [full])
        clock.advance(app.config.limits.refresh_s)
        await sup.brain.tick()
        modal = await wait_until(pilot, lambda: dialog(app), "the consent dialog")
        title = str(modal.query_one(".dialog-title").content)
        assert title == f"Permission to pause the sessions of {CODEX_ACCOUNT} until its window resets?"
        assert "pause build-1/bu000-s1 until" in str(modal.query_one("#consent-plan").content)
        await pilot.press("o")
        await wait_until(pilot, lambda: not sup.brain.pending_consent(), "the decision to be recorded")
        assert sup.brain.limits.guard.paused[CODEX_ACCOUNT].grant == sup.brain.grants(include_inactive=True)[0].id


async def test_at_80_columns_the_accounts_table_fits_and_says_how_long_until_each_reset(tmp_path):
    async with fixed_console(tmp_path, size=(80, 24)) as (app, pilot, clock):
        table = await accounts_table(app, pilot, clock)
        codex = next(w for w in app.reader.accounts() if w.account == CODEX_ACCOUNT and w.window == FIVE_HOUR)
        assert codex.resets_at is not None
        assert str(table.cell(f"{CODEX_ACCOUNT}\0{FIVE_HOUR}", "resets")) == f"in {fmt.duration(codex.resets_at - clock.now())}"
        assert table.virtual_size.width <= table.scrollable_content_region.width
