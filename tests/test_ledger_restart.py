"""A console restart keeps each session's project and cost: the fleet is rebuilt from the session
ledger before the brain starts, and month-to-date cost by project comes from the stored rollups."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentkit import free_port
from ledgerkit import demo_run

from heady_tui.config import NodeConfig
from heady_tui.supervisor import Supervisor


async def test_a_restarted_console_shows_the_same_cost_by_project_and_the_same_sessions(tmp_path: Path) -> None:
    async with demo_run(tmp_path, scenario="calm") as sup:
        pass
    assert sup.brain is not None
    before = sup.brain.cost_summary()
    projects = {key: rec.project for key, rec in sup.fleet.sessions.items()}
    assert any(p for p in projects.values()) and before.by_project
    # The same data directory, the node now unreachable: nothing new arrives.
    again = Supervisor(sup.config.model_copy(update={"nodes": [NodeConfig(name="n1", url=f"ws://127.0.0.1:{free_port()}/ws")]}),
                       sup.paths)  # fmt: skip
    await again.start()
    try:
        assert again.brain is not None
        after = again.brain.cost_summary()
        assert after.by_project == pytest.approx(before.by_project)
        assert after.month_usd == pytest.approx(before.month_usd)
        assert {key: rec.project for key, rec in again.fleet.sessions.items()} == projects
    finally:
        await again.stop()
