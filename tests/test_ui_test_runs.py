"""The session screen's timeline shows the test runs the session executed, with the store's verdict,
as plain text (on the real app, App.run_test)."""

from __future__ import annotations

from pathlib import Path

from uikit import fixed_console, wait_until

from heady_agent.protocol import Event
from heady_tui.ui.widgets.table import KeyedTable


async def test_the_session_timeline_shows_each_test_run_with_its_verdict_counts_and_command(tmp_path: Path) -> None:
    async with fixed_console(tmp_path) as (app, pilot, clock):
        sessions = app.screen.query_one("#sessions", KeyedTable)
        sessions.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "session", "the session screen")
        screen = app.screen
        node = app.supervisor.fleet.nodes[screen.node_id]
        assert node.journal is not None
        command = "pytest -q [bold]tests[/bold]"
        record = app.supervisor.fleet.sessions[(screen.node_id, screen.session_id)]
        ran = max(clock.now(), record.last_event_at) + 1  # after everything the session did so far
        frames = [Event(journal=node.journal, seq=node.last_seq + 1 + i, ts=ran + i, kind="test.run",
                        session=screen.session_id, data=data)
                  for i, data in enumerate(({"runner": "pytest", "command": command, "exit_code": 0, "passed": 40, "failed": 0},
                                            {"runner": "pytest", "command": command, "exit_code": 1, "passed": 38, "failed": 2}))]
        await app.supervisor.link_frames(screen.node_id, node.journal, frames)
        app.refresh_now(force=True)
        timeline = screen.query_one("#timeline", KeyedTable)
        keys = [f"{f.journal}:{f.seq}" for f in frames]
        await wait_until(pilot, lambda: set(keys) <= set(timeline.ids()), "the test runs in the timeline")
        rows = [[str(timeline.cell(k, c)) for c in ("kind", "model", "tokens", "note")] for k in keys]
        assert rows == [["tests", "pytest exit 0", "40 ok/0 failed", command],
                        ["tests failed", "pytest exit 1", "38 ok/2 failed", command]]
