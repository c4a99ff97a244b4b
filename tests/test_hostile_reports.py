"""Every report format over what a hostile agent sent: no terminal escapes, no live HTML, and in
Markdown no links, images or broken table rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agentkit import wait_until
from dpkit import supervisor_on
from heady_agent.protocol import Event
from heady_tui.config import Config, NodeConfig, Paths
from heady_tui.report import ReportData, gather_report, render
from heady_tui.store import Store
from hostile_agent import ESCAPE_BYTES, HTML, MARKDOWN, OSC52_CLIPBOARD, TOKEN, TS, HostileAgent, hostile_stream, once


async def hostile_report(tmp_path: Path) -> ReportData:
    async with HostileAgent(once(hostile_stream())) as agent:
        async with supervisor_on(tmp_path, [NodeConfig(name="hostile", url=agent.url, token=TOKEN)]) as sup:
            await wait_until(lambda: ("hostile", "s-md") in sup.fleet.sessions, what="the hostile sessions stored")
            await wait_until(lambda: sup.fleet.nodes["hostile"].last_seq >= 28, what="the whole stream stored")
            paths = Paths(tmp_path / "config.toml", tmp_path / "data")
            return await gather_report(sup.store, Config(), paths, since=TS, until=TS + 3600, now=TS + 3600)


@pytest.mark.parametrize("fmt", ["json", "md", "html"])
async def test_no_escape_sequence_reaches_a_report(tmp_path, fmt):
    text = render(await hostile_report(tmp_path), fmt)
    assert not [ch for ch in ESCAPE_BYTES if ch in text]


async def test_the_markdown_report_has_no_html_links_or_images(tmp_path):
    md = render(await hostile_report(tmp_path), "md")
    assert "<img" not in md and "<script" not in md
    assert not re.search(r"(?<!\\)!?(?<!\\)\[[^\]]*(?<!\\)\]\(", md)  # no [text](url) nor ![alt](src)
    assert "http://" not in md


async def test_a_pipe_or_line_break_in_a_name_does_not_break_a_markdown_table(tmp_path):
    md = render(await hostile_report(tmp_path), "md")
    sessions = md.split("## Sessions")[1].split("## ")[0]
    rows = [line for line in sessions.splitlines() if line.startswith("|")]
    header_cells = len(re.findall(r"(?<!\\)\|", rows[0]))
    assert all(len(re.findall(r"(?<!\\)\|", row)) == header_cells for row in rows)
    assert any("injected" in row for row in rows)  # the text is there, inside its cell


async def test_the_html_report_escapes_agent_markup(tmp_path):
    page = render(await hostile_report(tmp_path), "html")
    assert HTML not in page and "<script" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


async def test_history_stored_before_the_link_cleaned_is_cleaned_in_the_report(tmp_path):
    store = await Store.open(tmp_path / "heady.db")
    try:
        raw = Event.model_construct(journal="j1", seq=1, ts=TS + 1, kind="session.started", session="old", simulated=False,
                                    data={"source": "claude-code", "project": OSC52_CLIPBOARD + MARKDOWN})  # fmt: skip
        await store.record_node("old-node", hostname="h", info={}, simulated=False, now=TS)
        await store.store_batch("old-node", "j1", [raw])
        report = await gather_report(store, Config(), Paths(tmp_path / "c.toml", tmp_path), since=TS, until=TS + 60, now=TS + 60)
    finally:
        await store.close()
    for fmt in ("json", "md", "html"):
        text = render(report, fmt)
        assert not [ch for ch in ESCAPE_BYTES if ch in text], fmt
    assert json.loads(render(report, "json"))["sessions"][0]["project"].startswith("clipboard")
