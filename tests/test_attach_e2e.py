"""`heady attach` end to end: a real `heady run --headless` child supervising real agents on
loopback, and consoles attached to its socket. The brain stays in the service; each attached UI
shows its fleet and answers its consent requests, and one answer closes every dialog."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from agentkit import running_agent, wait_until
from uikit import fast_config, wait_for_audit
from uikit import wait_until as ui_wait_until

from heady_tui.attach.client import AttachedConsole, answers
from heady_tui.attach.wire import socket_path
from heady_tui.config import Paths
from heady_tui.operator import OperatorError
from heady_tui.ui.application import HeadyApp
from heady_tui.ui.screens.help import HelpScreen
from heady_tui.ui.modals.consent import INPUT_GUARD_S, ConsentModal
from heady_tui.ui.widgets.panels import StatusBar
from heady_tui.ui.widgets.table import KeyedTable

LINE_TIMEOUT_S = 90.0
SERVICE_CONFIG = [
    "[detector]", "evaluation_interval_s = 0.25", "for_seconds = 1", "clear_seconds = 2", "keep_firing_seconds = 1", "",
    "[rebalance]", "step_interval_s = 0.25", "",
]


@asynccontextmanager
async def headless_service(tmp_path: Path, stack: AsyncExitStack, *, scenario: str = "queue-overflow",
                           into: list[asyncio.subprocess.Process] | None = None) -> AsyncIterator[Path]:
    """Two synthetic agents and a `heady run --headless` child on them; yields its data dir once
    its attach socket answers (the child is appended to `into` when given)."""
    lines = []
    for i in range(2):
        agent = await stack.enter_async_context(running_agent(
            tmp_path, scenario=scenario, node_index=i, node_count=2, speed=10.0, name=f"n{i}", extra={"interval_s": 0.25}))
        lines += ["[[nodes]]", f'name = "n{i}"', f'url = "{agent.url}"', f'token = "{agent.token}"', ""]
    config_file, data_dir = tmp_path / "config.toml", tmp_path / "data"
    config_file.write_text("\n".join(lines + SERVICE_CONFIG))
    stderr = stack.enter_context(open(tmp_path / "service.stderr", "wb"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "heady_tui", "run", "--headless", "--config", str(config_file), "--data-dir", str(data_dir),
        stdout=asyncio.subprocess.DEVNULL, stderr=stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if into is not None:
        into.append(proc)
    try:
        deadline = time.monotonic() + LINE_TIMEOUT_S
        while not (socket_path(data_dir).exists() and await answers(socket_path(data_dir))):
            assert proc.returncode is None, (tmp_path / "service.stderr").read_text()
            assert time.monotonic() < deadline, "the headless console's socket never answered"
            await asyncio.sleep(0.1)
        yield data_dir
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)


async def attached(stack: AsyncExitStack, tmp_path: Path, data_dir: Path) -> AttachedConsole:
    console = AttachedConsole(socket_path(data_dir), Paths(tmp_path / "client.toml", data_dir))
    await console.start()
    stack.push_async_callback(console.stop)
    return console


def status_text(app: HeadyApp) -> str:
    return str(app.screen.query_one(StatusBar).content)


def dialogs(app: HeadyApp) -> list[ConsentModal]:
    return [screen for screen in app.screen_stack if isinstance(screen, ConsentModal)]


def dialog(app: HeadyApp) -> ConsentModal | None:
    """The consent dialog once it is on screen with its buttons, its input guard treated as over."""
    screen = app.screen
    if not (isinstance(screen, ConsentModal) and screen.query("#deny")):
        return None
    screen.opened_at = min(screen.opened_at, time.monotonic() - INPUT_GUARD_S)
    return screen


@pytest.mark.slow
async def test_one_answer_closes_both_dialogs_and_one_grant_names_who_answered(tmp_path):
    async with AsyncExitStack() as stack:
        data_dir = await stack.enter_async_context(headless_service(tmp_path, stack))
        first, second = [await attached(stack, tmp_path, data_dir) for _ in range(2)]
        config = fast_config()
        first_app = HeadyApp(first, config, operator=first.operator)
        second_app = HeadyApp(second, config, operator=second.operator)
        first_pilot = await stack.enter_async_context(first_app.run_test(size=(120, 40)))
        second_pilot = await stack.enter_async_context(second_app.run_test(size=(120, 40)))

        shown = await ui_wait_until(first_pilot, lambda: dialog(first_app), "the first console's consent dialog",
                                    timeout=LINE_TIMEOUT_S)
        other = await ui_wait_until(second_pilot, lambda: dialog(second_app), "the second console's consent dialog")
        assert other.request_id == shown.request_id
        await first_pilot.press("o")

        await ui_wait_until(first_pilot, lambda: not dialogs(first_app), "the first dialog to close")
        await ui_wait_until(second_pilot, lambda: not dialogs(second_app), "the second dialog to close")
        assert second.brain is not None
        grants = second.brain.grants(include_inactive=True)
        assert [(g.scope, g.grantor) for g in grants] == [("single", first.actor)]
        closed = f"consent request {shown.request_id} allowed by {first.actor}"
        await ui_wait_until(second_pilot, lambda: any(n.message == closed for n in second_app._notifications),
                            "the second console to say who answered")
        decided = await wait_for_audit(second_pilot, second.brain, "operator.consent.decide", "the decision audited")
        entries = await second.brain.audit_entries(2000)
        assert [(e.actor, e.details["origin"], e.details["target"], e.details["result"]) for e in decided] == [
            (first.actor, "attach", shown.request_id, "ok")]
        assert [e.details["grantor"] for e in entries if e.action == "consent.grant"] == [first.actor]


@pytest.mark.slow
async def test_a_dialog_under_the_help_screen_closes_too_when_another_console_answers(tmp_path):
    async with AsyncExitStack() as stack:
        data_dir = await stack.enter_async_context(headless_service(tmp_path, stack))
        first, second = [await attached(stack, tmp_path, data_dir) for _ in range(2)]
        first_app = HeadyApp(first, fast_config(), operator=first.operator)
        second_app = HeadyApp(second, fast_config(), operator=second.operator)
        first_pilot = await stack.enter_async_context(first_app.run_test(size=(120, 40)))
        second_pilot = await stack.enter_async_context(second_app.run_test(size=(120, 40)))
        await ui_wait_until(first_pilot, lambda: dialog(first_app), "the first console's dialog", timeout=LINE_TIMEOUT_S)
        await ui_wait_until(second_pilot, lambda: dialog(second_app), "the second console's dialog")
        second_app.action_help()  # another screen over the dialog
        await ui_wait_until(second_pilot, lambda: isinstance(second_app.screen, HelpScreen), "help over the dialog")
        await first_pilot.press("n")
        await ui_wait_until(second_pilot, lambda: not dialogs(second_app), "the dialog under help to close")
        assert not isinstance(second_app.screen, (HelpScreen, ConsentModal))


async def test_an_attached_console_shows_the_services_fleet_through_the_same_screens(tmp_path):
    async with AsyncExitStack() as stack:
        data_dir = await stack.enter_async_context(headless_service(tmp_path, stack, scenario="calm"))
        console = await attached(stack, tmp_path, data_dir)
        app = HeadyApp(console, fast_config(), operator=console.operator)
        pilot = await stack.enter_async_context(app.run_test(size=(160, 48)))
        nodes = app.screen.query_one("#nodes", KeyedTable)
        await ui_wait_until(pilot, lambda: nodes.row_count == 2 and "2/2 online" in status_text(app), "both nodes online")
        sessions = app.screen.query_one("#sessions", KeyedTable)
        await ui_wait_until(pilot, lambda: sessions.row_count > 0, "the service's sessions")
        await ui_wait_until(pilot, lambda: all(len(n.cpu) > 2 for n in console.fleet.nodes.values()), "metric samples")
        await ui_wait_until(pilot, lambda: "equilibrium BALANCED" in status_text(app), "the service's level")
        assert f"ATTACHED as {console.actor}" in status_text(app)


async def test_an_attached_session_screen_shows_the_timeline_the_service_stored(tmp_path):
    async with AsyncExitStack() as stack:
        data_dir = await stack.enter_async_context(headless_service(tmp_path, stack, scenario="calm"))
        console = await attached(stack, tmp_path, data_dir)
        app = HeadyApp(console, fast_config(), operator=console.operator)
        pilot = await stack.enter_async_context(app.run_test(size=(160, 48)))
        rec = await ui_wait_until(pilot, lambda: next((r for r in console.fleet.sessions.values() if r.calls), None),
                                  "a session with calls")
        app.open_session(rec.node, rec.id)
        timeline = await ui_wait_until(pilot, lambda: app.screen.query("#timeline") and app.screen.query_one("#timeline", KeyedTable),
                                       "the session screen")
        await ui_wait_until(pilot, lambda: timeline.row_count > 0, "the stored events of the session")
        stored = await console.session_timeline(rec.node, rec.id, 500)
        assert stored is not None and any(event.kind == "llm.call" for event in stored.events)
        assert {(c.journal, c.seq) for c in stored.calls} <= {(e.journal, e.seq) for e in stored.events}


@pytest.mark.slow
async def test_plain_heady_attaches_to_the_headless_console_of_its_data_dir(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    async with AsyncExitStack() as stack:
        data_dir = await stack.enter_async_context(headless_service(tmp_path, stack, scenario="calm"))
        (tmp_path / "client.toml").write_text("")
        child = pexpect.spawn(sys.executable, ["-m", "heady_tui", "--config", str(tmp_path / "client.toml"),
                                               "--data-dir", str(data_dir)],
                              env={**os.environ, "TERM": "xterm-256color"}, encoding="utf-8", timeout=LINE_TIMEOUT_S,
                              dimensions=(40, 120))
        stack.callback(lambda: child.terminate(force=True))
        log = tmp_path / "service.stderr"
        await wait_until(lambda: "console attached" in log.read_text(), timeout=LINE_TIMEOUT_S,
                         what="the service to log the attached console")
        await asyncio.to_thread(child.expect, "2/2 online")
        child.send("q")
        await asyncio.to_thread(child.expect, pexpect.EOF)
        await wait_until(lambda: "console detached" in log.read_text(), timeout=LINE_TIMEOUT_S,
                         what="the service to log the console gone")


async def test_an_attached_console_exits_with_one_line_when_the_service_dies(tmp_path):
    service: list[asyncio.subprocess.Process] = []
    async with AsyncExitStack() as stack:
        data_dir = await stack.enter_async_context(headless_service(tmp_path, stack, scenario="calm", into=service))
        console = await attached(stack, tmp_path, data_dir)
        app = HeadyApp(console, fast_config(), operator=console.operator)
        async with app.run_test(size=(120, 40)) as pilot:
            await ui_wait_until(pilot, lambda: "2/2 online" in status_text(app), "both nodes online")
            service[0].send_signal(signal.SIGKILL)
            await service[0].wait()
            await ui_wait_until(pilot, lambda: app.return_value == 1, "the console to exit with 1", timeout=LINE_TIMEOUT_S)
        assert console.lost == "the headless console closed the connection"
        with pytest.raises(OperatorError, match="not attached: the headless console closed the connection"):
            await console.operator.grant("single", "too late")
