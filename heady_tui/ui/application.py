"""HeadyApp: the Textual console over a Supervisor.

Refresh model (kind to SSH links and to idle CPU): nothing polls. The supervisor calls back when
the fleet or the brain changed (`Supervisor.watch`); that schedules ONE repaint of the screen on
top, no sooner than 1/[ui] refresh_hz after the previous one, so a burst of frames costs one
repaint and a still fleet costs none. While the screen on top shows ages ("offline for", session
age) a slow clock repaints it every CLOCK_S when the shown time has moved. Nothing is repainted
while frozen (`f`) or for screens that are not in view (a modal keeps the screen under it in view). Tables update
changed cells only. Consent requests from the brain queue up and open one dialog at a time over
whatever screen is showing.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import httpx

from rich.text import Text
from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from heady_agent.config import ConfigError
from heady_agent.protocol import Result

from ..attach.client import AttachedConsole
from ..config import Config, Paths
from ..engine.consent import ConsentError, ConsentRequest
from ..events import HeadyEvent
from ..operator import ConsoleOperator
from ..providers import fetch_provider_costs
from ..report import ReportError, export_report, parse_time
from ..store import Store, StoreError
from ..supervisor import Supervisor
from . import theme as themes
from .billing import ProviderBilling
from .formatting import level_severity
from .actions import ACTIONS, UiAction, bindings_for
from .backend import ConsoleBackend, Operator
from .actions import action as ui_action
from .modals.confirm import ConfirmModal
from .modals.consent import ANSWERED_ELSEWHERE, NEWER_PLAN, ConsentModal, ConsentViewModal
from .modals.error import ErrorModal
from .modals.row import RowModal
from .modals.export import ExportModal
from .reader import FleetReader
from .screens.base import LiveScreen
from .screens.help import HelpScreen, TooSmallScreen
from .terminal import CellDiffDriver, ScreenDiff
from .views import SESSION_KEY_SEP, ViewCell, split_session_key
from .widgets.panels import EventLog, StatusBar
from .widgets.table import KeyedTable

MIN_WIDTH, MIN_HEIGHT = 80, 24
# Below these sizes the screens use their compact layout.
WIDE_WIDTH, TALL_HEIGHT = 140, 32
CELL_CACHE_SIZE = 50_000
# Ages on screen ("offline for 3m", session ages) move at most this often when nothing else changes.
CLOCK_S = 10.0
# The refresh rate follows the operator's attention: [ui] refresh_hz for ACTIVE_S after a key press
# or click, then one repaint per IDLE_REFRESH_S at most, so an unwatched console over SSH sends
# little. A key pressed while idle brings the next repaint forward.
ACTIVE_S = 10.0
IDLE_REFRESH_S = 3.0
LOG_ENTRIES = 200  # notices and errors kept for the `l` view
VIEWS = ("overview", "costs", "healing", "permissions", "audit")
DECISION_WORDS = {
    "deny": "rebalance denied (snoozed)",
    "single": "rebalance allowed once",
    "session": "rebalance allowed for this session",
    "persistent": "rebalance always allowed (revocable on Permissions)",
}
ANSWER_EVENTS = ("consent.granted", "consent.denied")
LOST_EVENT = "attach.lost"  # an attached console's service went away (heady_tui/attach/client.py)


@dataclass(frozen=True)
class LogEntry:
    """A notice or an error the console showed, kept for the `l` view."""

    ts: float
    severity: str  # information | warning | error
    text: str


@dataclass(frozen=True)
class NodeControls:
    drained: bool | None = None  # None: not set from this console
    concurrency: int | None = None


class HeadyEventPosted(Message):
    """A supervisor event, delivered into the app's message queue."""

    def __init__(self, event: HeadyEvent) -> None:
        super().__init__()
        self.event = event


class RefreshDue(Message):
    """The throttle's delay after a change has passed: repaint the screen on top."""


class ClockDue(Message):
    """The slow clock for ages on screen."""


class ActionsProvider(Provider):
    """The command palette: every action of the registry that applies to the current screen."""

    def _candidates(self) -> list[UiAction]:
        app: HeadyApp = self.app  # type: ignore[assignment]
        screen = app.screen
        view = screen.VIEW if isinstance(screen, LiveScreen) else None
        out = []
        for action in ACTIONS:
            if action.screen not in ("app", view) or action.id in ("back", "filter", "open"):
                continue
            if app.read_only and action.changes_state:
                continue
            out.append(action)
        return out

    def _runner(self, action: UiAction):
        app: HeadyApp = self.app  # type: ignore[assignment]
        target = app if action.screen == "app" else app.screen

        async def run() -> None:
            await target.run_action(action.action)

        return run

    async def discover(self) -> Hits:
        app: HeadyApp = self.app  # type: ignore[assignment]
        for action in self._candidates():
            yield DiscoveryHit(action.description, self._runner(action), help=f"key: {app.get_key_display_for(action)}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for action in self._candidates():
            score = matcher.match(action.description)
            if score > 0:
                yield Hit(score, matcher.highlight(action.description), self._runner(action), help=action.id)


class HeadyApp(App[int]):
    CSS_PATH = "heady.tcss"
    TITLE = "heady"
    BINDINGS: ClassVar[list[BindingType]] = [*bindings_for("app")]
    COMMANDS = App.COMMANDS | {ActionsProvider}
    ENABLE_COMMAND_PALETTE = True

    def __init__(
        self,
        supervisor: ConsoleBackend,
        config: Config,
        *,
        operator: Operator | None = None,
        read_only: bool = False,
        theme: str | None = None,
        manage_supervisor: bool = True,
    ) -> None:
        self.theme_choice = theme or config.ui.theme  # read while the stylesheet is parsed
        # What the terminal shows, so only changed cells are written to it (read by get_driver_class).
        self.screen_diff: ScreenDiff | None = ScreenDiff() if config.ui.cell_diff else None
        super().__init__()
        unknown = sorted(set(config.ui.keymap) - {a.id for a in ACTIONS})
        if unknown:
            known = ", ".join(a.id for a in ACTIONS)
            raise ConfigError(f"ui.keymap: unknown action {unknown[0]!r} (known: {known})")
        self.supervisor = supervisor
        self.config = config
        self.read_only = read_only
        # The app starts and stops the supervisor unless its caller owns it (tests, benchmarks).
        self.manage_supervisor = manage_supervisor
        self.reader = FleetReader(supervisor, config)
        if operator is None:  # embedded: this process's supervisor; attached consoles bring their operator
            if not isinstance(supervisor, Supervisor):
                raise TypeError("a console without a Supervisor needs its operator")
            operator = ConsoleOperator(supervisor, "ui")
        self.operator: Operator = operator  # every action the operator takes goes through it
        self.frozen = False
        self.ascii_only = (getattr(sys.stdout, "encoding", None) or "utf-8").lower().replace("-", "") != "utf8"
        self.compact = True
        self._refresh_interval = 1.0 / config.ui.refresh_hz
        self._refresh_handle: asyncio.TimerHandle | None = None
        self._clock_handle: asyncio.TimerHandle | None = None
        self._last_refresh = float("-inf")  # event-loop time of the last scheduled repaint
        self._last_input = float("-inf")  # event-loop time of the last key press or click
        self._unwatch: Callable[[], None] | None = None
        self.billing = ProviderBilling(config.cost.providers)
        self._consent_queue: deque[ConsentRequest] = deque()
        self._consent_seen: set[str] = set()
        self._consent_open: str | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._events: deque[HeadyEvent] = deque(maxlen=500)
        # (node, action, target, Result) of the operator's commands, newest last.
        self.command_results: deque[tuple[str, str, str | None, Result]] = deque(maxlen=100)
        self.supervisor_error: str | None = None
        self.log_entries: deque[LogEntry] = deque(maxlen=LOG_ENTRIES)
        self._node_controls: dict[str, NodeControls] = {}
        self._cell_cache: dict[ViewCell, Text] = {}
        self._cell_cache_theme = ""
        self._views: dict[str, LiveScreen] = {}

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette's own entries: heady's two themes only. Textual's Screenshot, Maximize and
        second Quit, and its themes (which lack heady's severity colours), are left out; every
        heady action comes from ActionsProvider."""
        for choice, theme in themes.THEMES.items():
            yield SystemCommand(f"Theme: {choice}", f"switch to the {choice} theme", partial(self._set_theme, theme.name))

    def _set_theme(self, name: str) -> None:
        self.theme = name

    def get_theme_variable_defaults(self) -> dict[str, str]:
        # The stylesheet names $heady-border and $sev-*; every theme must define them.
        return dict(themes.THEMES[self.theme_choice].variables)

    # --- lifecycle ---------------------------------------------------------------------

    def on_mount(self) -> None:
        themes.register(self, self.theme_choice)
        if self.config.ui.keymap:
            self.set_keymap(dict(self.config.ui.keymap))
        self.compact = self._is_compact(self.size.width, self.size.height)
        self._unsubscribe = self.supervisor.subscribe(self._deliver_event)
        self._unwatch = self.supervisor.watch(self.schedule_refresh)
        self.push_screen(self._view("overview"))
        if self.manage_supervisor:
            self._start_supervisor()
        else:
            self._freeze_long_lived()
        self._check_size(self.size.width, self.size.height)

    def _freeze_long_lived(self) -> None:
        """Move what exists once the fleet is loaded (thousands of sessions, metric rings, widgets)
        out of the garbage collector's reach: a full collection scanning it all paused key presses
        for 100+ ms at 5,000 sessions. Undone when the app ends, so nothing stays pinned."""
        gc.collect()
        gc.freeze()

    @work(exclusive=True, group="supervisor", exit_on_error=False, description="starting the console")
    async def _start_supervisor(self) -> None:
        try:
            await self.supervisor.start()
        except (ConfigError, OSError, ValueError, StoreError) as exc:  # a locked database among them
            self.supervisor_error = str(exc)
            self.exit(1, message=f"heady: error: {exc}")
        else:
            self._freeze_long_lived()

    async def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        for handle in (self._refresh_handle, self._clock_handle):
            if handle is not None:
                handle.cancel()
        gc.unfreeze()
        if self.manage_supervisor:
            await self.supervisor.stop()

    def _deliver_event(self, event: HeadyEvent) -> None:
        # Called from the supervisor's tasks: hand over through the message queue.
        self.post_message(HeadyEventPosted(event))

    # --- refresh -----------------------------------------------------------------------

    def refresh_interval(self) -> float:
        """Seconds between repaints now: 1/refresh_hz while the operator is at the keys, else
        IDLE_REFRESH_S (or 1/refresh_hz if that is slower still)."""
        active = asyncio.get_running_loop().time() - self._last_input < ACTIVE_S
        return self._refresh_interval if active else max(IDLE_REFRESH_S, self._refresh_interval)

    def schedule_refresh(self) -> None:
        """Something changed (called by the supervisor): repaint once, no sooner than
        refresh_interval() after the last repaint. Changes arriving before that repaint share it."""
        if self._refresh_handle is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_refresh + self.refresh_interval() - loop.time())
        self._refresh_handle = loop.call_later(delay, self.post_message, RefreshDue())

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseDown)):
            self._last_input = asyncio.get_running_loop().time()
            if self._refresh_handle is not None:  # waiting at the idle rate: come forward
                self._refresh_handle.cancel()
                self._refresh_handle = None
                self.schedule_refresh()
        await super().on_event(event)

    def on_refresh_due(self, message: RefreshDue) -> None:
        self._refresh_handle = None
        self._last_refresh = asyncio.get_running_loop().time()
        self.refresh_now()

    def on_clock_due(self, message: ClockDue) -> None:
        self._clock_handle = None
        self.refresh_now()

    def _arm_clock(self) -> None:
        """Run the slow clock only while the screen on top shows ages and may repaint."""
        screen = self.screen if self.screen_stack else None
        wanted = isinstance(screen, LiveScreen) and screen.SHOWS_AGES and not self.frozen
        if wanted and self._clock_handle is None:
            self._clock_handle = asyncio.get_running_loop().call_later(CLOCK_S, self.post_message, ClockDue())
        elif not wanted and self._clock_handle is not None:
            self._clock_handle.cancel()
            self._clock_handle = None

    def modal_open(self) -> bool:
        return isinstance(self.screen, ModalScreen)

    def stamp_for(self, screen: LiveScreen) -> tuple:
        """Equal stamps show the same thing: the fleet's version, the brain's reading and, for a
        screen that shows ages, the clock in CLOCK_S steps."""
        clock = int(self.reader.now() // CLOCK_S) if screen.SHOWS_AGES else None
        return (self.reader.stamp(), clock)

    def refresh_now(self, *, force: bool = False) -> None:
        """One refresh: consent first (it must not wait for a freeze), then the active screen."""
        if not self.screen_stack:
            return
        self._check_consent()
        screen = self._shown_live_screen()
        self._arm_clock()
        if screen is None or not screen.is_mounted:
            return  # a screen still composing refreshes itself when it mounts
        if self.frozen and not force:
            return
        stamp = self.stamp_for(screen)
        if not force and stamp == screen.last_stamp:
            return
        screen.last_stamp = stamp
        screen.refresh_view()

    def _shown_live_screen(self) -> LiveScreen | None:
        """The live screen in view: the one on top, or the one a modal (a consent dialog) is drawn
        over, whose header (level, metric states) must stay current while the dialog is open."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, LiveScreen):
                return screen
            if not isinstance(screen, ModalScreen):
                return None
        return None

    def styled_text(self, text: str, severity: str | None) -> Text:
        """One piece of text in its severity's colour (plain without one), as the tables colour cells."""
        cell = self.cells({"c": ((text, severity),)})["c"][0]
        return cell if isinstance(cell, Text) else Text(cell, end="")

    def cells(self, rows: Mapping[str, tuple[ViewCell, ...]]) -> dict[str, tuple[Text | str, ...]]:
        """View cells as table cells: coloured Text for cells with a severity (cached: most repeat)."""
        cache = self._cell_cache
        if len(cache) > CELL_CACHE_SIZE or self._cell_cache_theme != self.theme:
            cache.clear()
            self._cell_cache_theme = self.theme
        out: dict[str, tuple[Text | str, ...]] = {}
        for key, row in rows.items():
            cells: list[Text | str] = []
            for cell in row:
                text, severity = cell
                if severity is None:
                    cells.append(text)
                    continue
                styled = cache.get(cell)
                if styled is None:
                    styled = cache[cell] = themes.styled(self, text, severity)
                cells.append(styled)
            out[key] = tuple(cells)
        return out

    def update_status(self, screen: LiveScreen) -> None:
        reader = self.reader
        level = reader.level()
        parts: list[tuple[str, str | None]] = [("heady", None)]
        if reader.simulated:
            parts += [("  ", None), ("SIMULATED", "warning")]
        holder = reader.acting_brain()
        if holder is not None:  # first, so a narrow terminal still shows it
            parts.append((f"  VIEW-ONLY (brain: {holder})", "careful"))
        if isinstance(self.supervisor, AttachedConsole):  # the brain is the headless service's
            parts.append((f"  ATTACHED as {self.supervisor.actor}", "careful"))
        parts += [
            ("  equilibrium ", None),
            (level.upper(), level_severity(level)),
            (f"  {reader.online_count()}/{len(reader.fleet.nodes)} online", None),
        ]
        live, unknown = reader.session_counts()
        parts.append((f"  {live} live", None))
        if unknown:
            parts.append((f"  {unknown} unknown (node offline)", "warning"))
        waiting = len(reader.fleet.waiting_sessions())
        if waiting:
            parts.append((f"  {waiting} need you ({self.get_key_display_for(ui_action('jump_waiting'))})", "warning"))
        parts.append((f"  [{screen.TITLE_TEXT}]", None))
        run = reader.rebalance()
        if run is not None and run.state == "running":
            watching = " watching" if run.watching_for_balance else ""
            parts.append((f"  REBALANCING {run.steps_done}/{run.steps_total}{watching}", "warning"))
        burn = reader.burn_alert()
        if burn is not None:
            parts.append((f"  {burn}", "critical"))
        pending = len(self._consent_queue) + (1 if self._consent_open else 0)
        if pending:
            viewing = self.read_only or holder is not None
            parts.append((f"  CONSENT PENDING {pending}" + (" (w: view)" if viewing else ""), "critical"))
        if self.frozen:
            parts.append(("  PAUSED", "critical"))
        if self.read_only:
            parts.append(("  READ-ONLY", "careful"))
        insecure = self.supervisor.insecure_links()
        if insecure:
            parts.append((f"  INSECURE LINK: {', '.join(insecure)}", "critical"))
        screen.part("#status", StatusBar).show(parts)

    # --- events and consent ------------------------------------------------------------

    def on_heady_event_posted(self, message: HeadyEventPosted) -> None:
        event = message.event
        self._events.append(event)
        for log in self._event_logs():
            log.add(event)
        if event.name == "consent.requested":
            self._check_consent()
        elif event.name == LOST_EVENT:
            self.exit(1, message=f"heady: error: detached from {event.details.get('socket')}: {event.details.get('reason')}")

    def _event_logs(self) -> list[EventLog]:
        """Event logs of every kept view, shown or not, so none misses an event."""
        screens = {id(s): s for s in [*self.screen_stack, *self._views.values()]}
        return [log for screen in screens.values() if screen.is_mounted for log in screen.query(EventLog)]

    @property
    def recent_events(self) -> list[HeadyEvent]:
        return list(self._events)

    def _check_consent(self) -> None:
        brain = self.supervisor.brain
        if brain is None:
            return
        pending = brain.pending_consent()
        live = {request.id: request for request in pending}
        for request in pending:
            if request.id not in self._consent_seen:
                self._consent_seen.add(request.id)
                self._consent_queue.append(request)
        # A request that expired or was answered elsewhere while queued is dropped; its open dialog
        # closes (another console attached to the same service answered it).
        self._consent_queue = deque(r for r in self._consent_queue if r.id in live)
        if self._consent_open is not None and self._consent_open not in live:
            for screen in self.screen_stack:
                if isinstance(screen, ConsentModal) and screen.request_id == self._consent_open:
                    screen.pop_until_active()  # help or the log may be open over it; dismiss pops the top
                    screen.dismiss(ANSWERED_ELSEWHERE)
                    break
        shown = live.get(self._consent_open or "")
        if shown is not None and shown.superseded_by is not None:
            for screen in self.screen_stack:
                if isinstance(screen, ConsentModal) and screen.request_id == shown.id:
                    screen.superseded()
        # A view-only console asks nothing: the brain holding the lease asks its own operators.
        if self.read_only or brain.view_only or self._consent_open is not None or not self._consent_queue:
            return
        request = self._consent_queue.popleft()
        try:
            brain.hold_consent(request.id)  # from now on the request stays as the dialog shows it
        except ConsentError:
            return
        self._consent_open = request.id
        dialog = ConsentModal(
            request, levels=self.reader.metric_levels(), session_hours=self.config.consent.session_hours
        )
        self.push_screen(dialog, callback=lambda decision, rid=request.id: self._decided(rid, decision))

    def _answered_elsewhere(self, request_id: str) -> str:
        """Who closed a request this console showed, from the event the service published."""
        for event in reversed(self._events):
            if event.name in ANSWER_EVENTS and event.details.get("request") == request_id:
                verb = "denied" if event.name == "consent.denied" else "allowed"
                return f"consent request {request_id} {verb} by {event.details.get('grantor')}"
        return f"consent request {request_id} closed elsewhere"

    def action_view_consent(self) -> None:
        """The pending requests and their plans, view only: how a read-only console sees them."""
        brain = self.supervisor.brain
        pending = brain.pending_consent() if brain is not None else []
        if not pending:
            self.notify("no consent request is pending", markup=False)
            return
        levels = self.reader.metric_levels()
        self.push_screen(ConsentViewModal(pending, levels=levels, session_hours=self.config.consent.session_hours))

    async def _decided(self, request_id: str, decision: str) -> None:
        brain = self.supervisor.brain
        answers = decision not in (NEWER_PLAN, ANSWERED_ELSEWHERE)  # the newer request is queued and opens next
        try:
            if answers:
                await self.operator.decide_consent(request_id, decision)
        except Exception as exc:  # the decision did not take: say so, the request stays pending
            self._consent_seen.discard(request_id)
            self.notify(f"consent {decision} failed: {exc}", severity="error", markup=False)
        else:
            if answers:
                self.notify(DECISION_WORDS[decision], markup=False)
            elif decision == ANSWERED_ELSEWHERE:
                self.notify(self._answered_elsewhere(request_id), markup=False)
        finally:
            self._consent_open = None
            if brain is not None:
                await brain.release_consent(request_id)
        self.refresh_now(force=True)

    # --- navigation and app actions ----------------------------------------------------

    def _is_compact(self, width: int, height: int) -> bool:
        return width < WIDE_WIDTH or height < TALL_HEIGHT

    def on_resize(self, event) -> None:
        compact = self._is_compact(event.size.width, event.size.height)
        self.set_class(compact, "-compact")
        self.set_class(not compact, "-wide")
        if compact != self.compact:
            self.compact = compact
            screen = self.screen
            if isinstance(screen, LiveScreen) and screen.VIEW in VIEWS:
                self.switch_screen(self._view(screen.VIEW))
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int, height: int) -> None:
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        screen = self.screen
        showing = isinstance(screen, TooSmallScreen)
        if small and not showing:
            self.push_screen(TooSmallScreen(MIN_WIDTH, MIN_HEIGHT))
        elif small and isinstance(screen, TooSmallScreen):
            screen.show_size(width, height)
        elif not small and showing:
            self.pop_screen()

    def _make_view(self, name: str) -> LiveScreen:
        from .screens.audit import AuditScreen
        from .screens.costs import CostsScreen
        from .screens.healing import HealingScreen
        from .screens.overview import OverviewScreen
        from .screens.permissions import PermissionsScreen

        classes = {
            "overview": OverviewScreen,
            "costs": CostsScreen,
            "healing": HealingScreen,
            "permissions": PermissionsScreen,
            "audit": AuditScreen,
        }
        return classes[name](compact=self.compact)

    def _view(self, name: str) -> str:
        """The installed screen for a main view in the current layout, made on first use and kept,
        so switching back and forth repaints instead of rebuilding hundreds of rows."""
        key = f"{name}-{'compact' if self.compact else 'wide'}"
        if key not in self._views:
            screen = self._make_view(name)
            self.install_screen(screen, key)
            self._views[key] = screen
        return key

    def action_switch_view(self, name: str) -> None:
        if isinstance(self.screen, LiveScreen) and self.screen.VIEW == name:
            return
        # Views replace each other at the bottom of the stack; details stack on top of a view.
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(self._view(name))

    def action_jump_waiting(self) -> None:
        """Open the session that has waited longest for a person."""
        waiting = self.reader.fleet.waiting_sessions()
        if not waiting:
            self.notify("no session is waiting for you")
            return
        rec = waiting[0]
        while len(self.screen_stack) > 2:  # one session screen at a time, over the current view
            self.pop_screen()
        self.open_session(rec.node, rec.id)

    def open_node(self, node_id: str) -> None:
        from .screens.node import NodeScreen

        self.push_screen(NodeScreen(node_id, compact=self.compact))

    def open_session(self, node_id: str, session_id: str) -> None:
        from .screens.session import SessionScreen

        self.push_screen(SessionScreen(node_id, session_id, compact=self.compact))

    async def action_back(self) -> None:
        if len(self.screen_stack) > 2:
            self.pop_screen()
        elif isinstance(self.screen, LiveScreen) and self.screen.VIEW != "overview":
            self.switch_screen(self._view("overview"))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            view = self.screen.VIEW if isinstance(self.screen, LiveScreen) else "overview"
            self.push_screen(HelpScreen(view))

    def action_toggle_freeze(self) -> None:
        self.frozen = not self.frozen
        screen = self.screen
        self._arm_clock()
        if isinstance(screen, LiveScreen):
            if self.frozen:
                self.update_status(screen)
            else:
                self.refresh_now(force=True)

    def _focused_table(self) -> KeyedTable | None:
        screen = self.screen
        if isinstance(screen, LiveScreen):
            return screen.filter_table()
        focused = screen.focused
        return focused if isinstance(focused, KeyedTable) else None

    def action_sort(self, reverse: bool) -> None:
        """`s` cycles the focused table's sort column, `S` reverses the order."""
        table = self._focused_table()
        if table is not None:
            table.action_reverse_sort() if reverse else table.action_cycle_sort()

    def action_copy_id(self) -> None:
        """Copy the selected row's id (a session's own id) to the clipboard over OSC 52."""
        table = self._focused_table()
        key = table.selected_key if table is not None else None
        if key is None:
            self.notify("nothing selected to copy", severity="warning")
            return
        copied = split_session_key(key)[1] if SESSION_KEY_SEP in key else key
        self.copy_to_clipboard(copied)
        self.notify(f"copied {copied}", markup=False)

    def action_open_row(self) -> None:
        """Enter on the focused table's selected row (the table itself answers when it has the focus)."""
        table = self._focused_table()
        key = table.selected_key if table is not None else None
        if table is None or key is None:
            self.notify("nothing selected to open", severity="warning")
            return
        if isinstance(self.screen, LiveScreen):
            self.screen.open_row(table, key)
        else:
            self.show_row(table, key)

    def show_row(self, table: KeyedTable, key: str) -> None:
        title = table.border_title if isinstance(table.border_title, str) and table.border_title else "Row"
        self.push_screen(RowModal(title, table.fields(key)))

    def action_filter(self) -> None:
        if isinstance(self.screen, LiveScreen):
            self.screen.open_filter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Over a dialog only quit, help and the log apply (and show in its key line).
        if self.modal_open() and action not in ("quit", "help", "show_log"):
            return False
        return True

    # --- report export -------------------------------------------------------------------

    def action_export_report(self) -> None:
        self.push_screen(ExportModal(self.write_report))

    async def write_report(self, fmt: str, since_text: str) -> Path:
        """Export the session report for [since, now) to the data dir's reports/ folder.

        The work runs in a thread with its own store connection and event loop (WAL lets it read
        beside the supervisor's), so neither the queries nor the rendering hold up a key press.
        Raises ReportError / StoreError with one line."""
        now = self.reader.now()
        since = parse_time(since_text, now, option="range")
        if since >= now:
            raise ReportError(f"range: {since_text.strip()!r} does not reach into the past")
        return await asyncio.to_thread(
            _export_in_thread, self.config, self.supervisor.paths, since, now, fmt, self.reader.simulated
        )

    # --- provider costs --------------------------------------------------------------------

    def ask_providers_if_due(self) -> None:
        """Called while the costs screen shows: ask the providers when the last answer is
        `[cost.providers] refresh_s` old (or there is none). Never waits for the answer."""
        summary = self.reader.cost_summary()
        now = self.reader.now()
        if summary is None or not self.billing.due(now):
            return
        self.billing.started()
        self._ask_providers(*self.billing.fetch_range(summary.by_day, now))

    @work(exclusive=True, group="providers", exit_on_error=False)
    async def _ask_providers(self, since: float, until: float) -> None:
        try:
            costs = await fetch_provider_costs(self.config.cost.providers, since, until, now=self.reader.now)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            self.billing.failed(f"{type(exc).__name__}: {exc}".splitlines()[0], self.reader.now())
        else:
            self.billing.answered(costs, self.reader.now())
        # Ask again after refresh_s if the costs screen is still showing then (else when it shows next).
        self.set_timer(self.config.cost.providers.refresh_s, self._providers_timer, name="heady-providers")
        screen = self.screen
        if isinstance(screen, LiveScreen) and screen.VIEW == "costs":
            self.refresh_now(force=True)

    def _providers_timer(self) -> None:
        screen = self.screen
        if isinstance(screen, LiveScreen) and screen.VIEW == "costs":
            self.ask_providers_if_due()

    def get_key_display_for(self, action: UiAction) -> str:
        keys = self.config.ui.keymap.get(action.id, action.key)  # what set_keymap was given
        return ", ".join(self.get_key_display(Binding(key.strip(), "")) for key in keys.split(","))

    # --- notices, errors and the log ---------------------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """A toast, also kept for the `l` log view (toasts vanish after a few seconds)."""
        self.log_entries.append(LogEntry(self.reader.now(), severity, f"{title}: {message}" if title else message))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def get_driver_class(self) -> type[Driver]:
        """Textual's own driver, or on a Unix terminal the one that writes only changed cells."""
        driver = super().get_driver_class()
        return CellDiffDriver if self.screen_diff is not None and driver is LinuxDriver else driver

    def action_redraw(self) -> None:
        """Paint the whole screen again, for a terminal something else wrote over (a wall message)."""
        if self.screen_diff is not None:
            self.screen_diff.forget()
        for screen in self.screen_stack:
            screen.refresh()

    def action_show_log(self) -> None:
        from .screens.log import LogScreen

        if not isinstance(self.screen, LogScreen):
            self.push_screen(LogScreen())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a failed worker (an operator action, a screen loader) is reported: an error
        dialog and a log entry, and the console carries on."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        text = f"{type(error).__name__}: {error}".splitlines()[0] if error is not None else "unknown error"
        what = event.worker.description or event.worker.name or "background work"
        self.log_entries.append(LogEntry(self.reader.now(), "error", f"{what}: {text}"))
        self.push_screen(ErrorModal(f"{what} failed", text))

    # --- acting on the fleet -----------------------------------------------------------

    def act(self, what: str, operation: Callable[[], Awaitable[object]], done: str) -> None:
        """Run an operator action as a worker and return at once: the key press that asked for it
        is handled, and the next key is not held up by the node or the database. A refused action
        (ValueError: one line) is a notice; anything else reaches on_worker_state_changed."""

        async def run() -> None:
            try:
                await operation()
            except ValueError as exc:
                self.notify(f"{what}: {exc}", severity="error", markup=False)
                return
            self.notify(done, markup=False)
            self.refresh_now(force=True)

        self.run_worker(run(), name=what, description=what, group="operator", exit_on_error=False)

    def confirm_then(self, title: str, body: str, on_yes: Callable[[], None], *, label: str = "Confirm") -> None:
        """Ask before a destructive action; `on_yes` runs only on Confirm."""

        def answered(yes: bool | None) -> None:
            if yes:
                on_yes()

        self.push_screen(ConfirmModal(title, body, label), callback=answered)

    def node_controls(self, node: str) -> NodeControls:
        """Drain and concurrency as last set on `node` from this console (the agents do not
        report them back yet); shown on the node's screen and offered when `c` asks again."""
        return self._node_controls.get(node, NodeControls())

    def send_command(self, node: str, action: str, target: str | None = None, args: dict | None = None) -> None:
        """Send one agent command through the operator layer, as a worker; its answer is posted
        to the event log and as a notice when it arrives."""
        if self.read_only:
            self.notify("read-only console: nothing was sent", severity="warning")
            return
        what = f"{action} {target or node}"

        async def run() -> None:
            try:
                result = await self.operator.command(node, action, target, args)
            except ValueError as exc:  # the console is still starting, or not an operator action
                self.notify(f"{what}: {exc}", severity="error", markup=False)
                return
            self.command_results.append((node, action, target, result))
            if result.ok and action in ("node.drain", "node.undrain", "node.set_concurrency"):
                controls = self.node_controls(node)
                if action == "node.set_concurrency" and args is not None:
                    controls = replace(controls, concurrency=int(args["value"]))
                elif action != "node.set_concurrency":
                    controls = replace(controls, drained=action == "node.drain")
                self._node_controls[node] = controls
            for log in self._event_logs():
                log.add_command(node, action, target, result.ok, result.error, self.reader.now())
            if result.ok:
                self.notify(f"{what}: done", markup=False)
            else:
                self.notify(f"{what}: {result.error}", severity="error", markup=False)
            self.refresh_now(force=True)

        self.run_worker(run(), name=what, description=what, group="operator", exit_on_error=False)



def _export_in_thread(config: Config, paths: Paths, since: float, until: float, fmt: str, simulated: bool) -> Path:
    async def export() -> Path:
        store = await Store.open(paths.database, metric_rollup_s=config.store.metric_rollup_s)
        try:
            return await export_report(
                store, config, paths, since=since, until=until, now=until, fmt=fmt,  # type: ignore[arg-type]
                simulated=simulated, ask_providers=ProviderBilling(config.cost.providers).configured,
            )
        finally:
            await store.close()

    return asyncio.run(export())
