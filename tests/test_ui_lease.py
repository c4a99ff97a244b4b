"""A console opened on a database whose fleet another console's brain already acts on: the header
says so, and it pops no consent dialog for the other brain's question."""

from __future__ import annotations

from contextlib import AsyncExitStack

from agentkit import running_agent
from uikit import fast_config, wait_until

from heady_tui.config import Paths
from heady_tui.supervisor import Supervisor
from heady_tui.ui.application import HeadyApp
from heady_tui.ui.modals.consent import ConsentModal
from heady_tui.ui.widgets.panels import StatusBar


def status_text(app: HeadyApp) -> str:
    return str(app.screen.query_one(StatusBar).content)


async def test_a_second_console_shows_view_only_with_the_holder_and_asks_nothing(tmp_path):
    async with AsyncExitStack() as stack:
        agents = [await stack.enter_async_context(running_agent(
            tmp_path, scenario="queue-overflow", node_index=i, node_count=2, speed=10.0, name=f"node{i}")) for i in range(2)]
        config = fast_config([{"name": f"node{i}", "url": a.url, "token": a.token} for i, a in enumerate(agents)])
        paths = Paths(tmp_path / "config.toml", tmp_path / "console")
        service = Supervisor(config, paths)
        await service.start()
        stack.push_async_callback(service.stop)
        holder = service.brain.lease_view().me

        app = HeadyApp(Supervisor(config, paths), config)
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_until(pilot, lambda: f"VIEW-ONLY (brain: {holder})" in status_text(app), "the view-only header")
            await wait_until(pilot, lambda: bool(service.brain.pending_consent()), "the acting brain to ask for consent", timeout=60)
            await wait_until(pilot, lambda: "CONSENT PENDING 1 (w: view)" in status_text(app), "the pending question shown")
            assert not any(isinstance(s, ConsentModal) for s in app.screen_stack)
            assert app.supervisor.brain.view_only
