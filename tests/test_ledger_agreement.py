"""One truth: after a demo run on a real synthetic agent, a session's state, calls, tokens by kind
and cost read the same from the live fleet, `heady sessions list --json` (a real child process) and
the JSON and Markdown reports; so do the fleet's total and per-model cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentkit import wait_until
from ledgerkit import TIMEOUT_S, demo_run, heady, sessions_list_json

from heady_tui.config import Config
from heady_tui.ledger import SessionRecord
from heady_tui.report import ReportData, _usd, gather_report, render, session_state
from heady_tui.store import Store
from heady_tui.supervisor import Supervisor

TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "cache_read_tokens", "reasoning_tokens")


def figures(source: Any) -> dict[str, Any]:
    """State, reason, calls, tokens by kind and cost of a fleet record, a CLI row or a report row."""
    get = (lambda k: source[k]) if isinstance(source, dict) else (lambda k: getattr(source, k))
    reason = source.state_reason if isinstance(source, SessionRecord) else get("reason")
    return {"state": get("state"), "reason": reason, "calls": get("calls"), "failed_calls": get("failed_calls"),
            **{k: get(k) for k in TOKEN_KINDS}, "cost_usd": round(get("cost_usd"), 6)}  # fmt: skip


async def report_of(sup: Supervisor) -> tuple[ReportData, str]:
    store = await Store.open(sup.paths.database)
    try:
        now = sup.clock.now()
        report = await gather_report(store, Config(), sup.paths, since=0.0, until=now + 3600, now=now)
    finally:
        await store.close()
    return ReportData.model_validate(json.loads(render(report, "json"))), render(report, "md")


def markdown_row(md: str, node: str, session: str) -> list[str]:
    (line,) = [line for line in md.splitlines() if line.startswith(f"| {session} | {node} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.fixture
async def demo(tmp_path: Path) -> Supervisor:
    """A runaway-cost demo on one real agent; its runaway session killed from the console."""
    async with demo_run(tmp_path) as sup:
        await wait_until(lambda: any("-runaway-" in s.id for s in sup.fleet.sessions.values()), TIMEOUT_S, "the runaway session")
        runaway = next(s for s in sup.fleet.sessions.values() if "-runaway-" in s.id)
        result = await sup.command("n1", "session.kill", runaway.id)
        assert result.ok, result
        await wait_until(lambda: sup.fleet.sessions[runaway.key].state == "error", TIMEOUT_S, "the kill to be stored")
    return sup


async def test_a_session_reads_the_same_in_the_fleet_the_cli_and_both_reports(demo: Supervisor, tmp_path: Path) -> None:
    busiest = max(demo.fleet.sessions.values(), key=lambda s: (s.calls, s.id))
    assert busiest.calls > 0 and busiest.cost_usd > 0
    cli = {(r["node"], r["id"]): r for r in await sessions_list_json(tmp_path, demo.paths.data_dir)}
    report, md = await report_of(demo)
    in_report = {(s.node, s.id): s for s in report.sessions}
    expected = figures(busiest)
    assert figures(cli[busiest.key]) == expected
    assert figures(in_report[busiest.key]) == expected
    row = markdown_row(md, busiest.node, busiest.id)
    assert row[5:] == [session_state(in_report[busiest.key]), busiest.priority, f"{busiest.calls:,}", f"{busiest.input_tokens:,}",
                       f"{busiest.output_tokens:,}", f"{busiest.cache_creation_tokens:,}", f"{busiest.cache_read_tokens:,}",
                       _usd(round(busiest.cost_usd, 6))]  # fmt: skip


async def test_a_killed_session_is_error_killed_everywhere(demo: Supervisor, tmp_path: Path) -> None:
    killed = next(s for s in demo.fleet.sessions.values() if "-runaway-" in s.id)
    assert (killed.state, killed.state_reason) == ("error", "killed")
    cli = {(r["node"], r["id"]): r for r in await sessions_list_json(tmp_path, demo.paths.data_dir)}
    report, md = await report_of(demo)
    in_report = {(s.node, s.id): s for s in report.sessions}
    assert (cli[killed.key]["state"], cli[killed.key]["reason"]) == ("error", "killed")
    assert (in_report[killed.key].state, in_report[killed.key].reason) == ("error", "killed")
    assert markdown_row(md, killed.node, killed.id)[5] == "error (killed)"


async def test_the_fleet_total_and_cost_per_model_agree_between_the_brain_the_ledger_and_both_reports(demo: Supervisor) -> None:
    assert demo.brain is not None
    summary = demo.brain.cost_summary()
    report, md = await report_of(demo)
    ledger_total = sum(s.cost_usd for s in demo.fleet.sessions.values())
    assert summary.month_usd == pytest.approx(ledger_total, abs=1e-6)
    assert report.costs.total_usd == pytest.approx(ledger_total, abs=1e-5)
    assert report.costs.by_model == pytest.approx(summary.by_model, abs=1e-5)
    assert f"**Total cost: {_usd(report.costs.total_usd)}**" in md
    for model, usd in report.costs.by_model.items():
        assert f"| {model} | {_usd(usd)} |" in md


async def test_a_live_nodes_sessions_carry_the_ledgers_calls_and_cost(tmp_path: Path) -> None:
    async with demo_run(tmp_path, scenario="calm") as sup:
        busiest = max(sup.fleet.sessions.values(), key=lambda s: (s.calls, s.id))
        seen = (busiest.calls, busiest.cost_usd)
        link = sup.links["n1"].node
        config = tmp_path / "live-config.toml"
        config.write_text(f'[[nodes]]\nname = "n1"\nurl = "{link.url}"\ntoken = "{link.token}"\n')
        code, out, err = await heady(tmp_path, "sessions", "list", "--json", "--config", str(config), "--data-dir", str(sup.paths.data_dir))
        assert code == 0, err
    row = {r["id"]: r for r in json.loads(out)}[busiest.id]
    assert row["live"] is True
    assert row["calls"] >= seen[0] > 0 and row["cost_usd"] >= round(seen[1], 6) > 0
