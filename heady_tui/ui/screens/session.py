"""Session detail: what the session is, its timeline of calls and state changes (from the store),
its cost, and the session actions: kill, pause, resume, restart, prompt, priority class."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Static

from ...config import PRIORITY_CLASSES
from ...fleet import WAITING_STATE
from ...ledger import PRIORITY_BY_OPERATOR
from .. import formatting as fmt
from .. import views
from ..modals.ask import AskModal
from ..widgets.table import KeyedTable
from ..widgets.panels import show
from .base import LiveScreen

TIMELINE_COLUMNS = (
    ("time", "Time"),
    ("kind", "Event"),
    ("model", "Model / state"),
    ("tokens", "In/Out"),
    ("latency", "Latency"),
    ("cost", "Cost"),
    ("note", "Note"),
)
TIMELINE_ROWS = 500  # the newest; the report export has them all


class SessionScreen(LiveScreen):
    VIEW = "session"
    TITLE_TEXT = "Session"

    def __init__(self, node_id: str, session_id: str, *, compact: bool) -> None:
        super().__init__()
        self.node_id = node_id
        self.session_id = session_id
        self.compact = compact
        self.TITLE_TEXT = f"Session {session_id[:16]}"
        self._loaded_at: float | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        info = Static(id="session-info", classes="detail-info")
        info.border_title = Text(f"Session {self.session_id} on {self.node_id}")  # ids are agent text, not markup
        yield info
        timeline = KeyedTable(TIMELINE_COLUMNS, id="timeline", fit=("model", "note"))
        timeline.border_title = "Timeline"
        yield timeline
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.part("#timeline", KeyedTable).focus()
        self.refresh_view()

    @property
    def record(self):
        return self.heady.reader.fleet.sessions.get((self.node_id, self.session_id))

    def _info(self) -> Text:
        rec = self.record
        if rec is None:
            return Text("The console has no record of this session.", end="")
        now = self.heady.reader.now()
        age = None if rec.started is None else (rec.ended or now) - rec.started
        text = Text(end="")
        text.append(f"{rec.source or '?'}  {rec.project or '-'}  model {rec.model or '-'}  ")
        text.append_text(self.heady.styled_text(rec.state, views.STATE_SEVERITY.get(rec.state)))
        if rec.state_reason:
            text.append(f" ({rec.state_reason})")
        if rec.state == WAITING_STATE and rec.live:
            text.append(f" for {fmt.duration(now - rec.state_since)}")
        text.append(f"  age {fmt.duration(age)}  priority {rec.priority}")
        if rec.priority_by == PRIORITY_BY_OPERATOR:
            text.append(" (set by an operator)")
        text.append(f"\ncwd {rec.cwd or '-'}  pid {rec.pid or '-'}")
        if rec.managed:
            text.append(f"  managed {rec.managed}")
        if rec.nice is not None:
            text.append(f"  nice {rec.nice}")
        text.append(
            f"\ncalls {rec.calls} ({rec.failed_calls} failed)  tokens in {fmt.tokens(rec.input_tokens)} out {fmt.tokens(rec.output_tokens)}"
            f" cache w {fmt.tokens(rec.cache_creation_tokens)} r {fmt.tokens(rec.cache_read_tokens)}  cost {fmt.money(rec.cost_usd)}"
            f"  compactions {rec.compactions}"
        )
        if rec.reported_cost_usd is not None and abs(rec.reported_cost_usd - rec.cost_usd) >= 0.005:
            text.append(f" (agent reported {fmt.money(rec.reported_cost_usd)})")
        if rec.cost_unknown:
            text.append("  (some calls unpriced)")
        if rec.exit_code is not None:
            text.append(f"  exit {rec.exit_code}")
        return text

    def refresh_view(self) -> None:
        show(self.part("#session-info", Static), self._info())
        rec = self.record
        if rec is not None and rec.last_event_at != self._loaded_at:
            self._loaded_at = rec.last_event_at
            self._load_timeline()
        self.heady.update_status(self)

    @work(exclusive=True, group="timeline", exit_on_error=False, description="loading the session timeline")
    async def _load_timeline(self) -> None:
        timeline = await self.heady.supervisor.session_timeline(self.node_id, self.session_id, TIMELINE_ROWS)
        if timeline is None:  # the console is still starting
            return
        # Each call's cost as the store priced it when it stored the call.
        priced = {(c.journal, c.seq): c for c in timeline.calls}
        # Each test run with the verdict the store gave it.
        runs = {(r.journal, r.seq): r for r in timeline.test_runs}
        rows: dict[str, tuple[str | Text, ...]] = {}
        for ev in reversed(timeline.events):
            data = ev.data
            key = f"{ev.journal}:{ev.seq}"
            if ev.kind == "llm.call":
                ok = data.get("ok", True)
                call = priced.get((ev.journal, ev.seq))
                cost = call.cost_usd if call is not None else None
                rows[key] = (
                    fmt.clock_time(ev.ts),
                    "call" if ok else Text("call failed", style="bold"),
                    str(data.get("model", "-")),
                    f"{fmt.tokens(data.get('input_tokens', 0))}/{fmt.tokens(data.get('output_tokens', 0))}",
                    "-" if data.get("latency_ms") is None else f"{data['latency_ms']:.0f}ms",
                    fmt.money(cost) if cost is not None else "-",
                    Text(str(data.get("error") or ""), end=""),
                )
            elif ev.kind == "test.run" and (ev.journal, ev.seq) in runs:
                run = runs[(ev.journal, ev.seq)]
                counts = "-" if run.passed is None and run.failed is None else f"{run.passed or 0} ok/{run.failed or 0} failed"
                rows[key] = (
                    fmt.clock_time(ev.ts),
                    "tests" if run.ok else Text("tests failed", style="bold"),
                    Text(f"{run.runner} exit {run.exit_code}", end=""),
                    counts,
                    "",
                    "",
                    Text(run.command, end=""),
                )
            else:
                state = data.get("state") or data.get("source") or ("exit " + str(data.get("exit_code")) if "exit_code" in data else "")
                rows[key] = (
                    fmt.clock_time(ev.ts),
                    ev.kind.removeprefix("session."),
                    Text(str(state), end=""),
                    "",
                    "",
                    "",
                    Text(str(data.get("reason") or data.get("message") or ""), end=""),
                )
        self.part("#timeline", KeyedTable).sync(rows)

    def _command(self, action: str, args: dict | None = None):
        def run() -> None:
            self.heady.send_command(self.node_id, action, self.session_id, args)

        return run

    def action_kill(self) -> None:
        self.heady.confirm_then(
            f"Kill session {self.session_id}?",
            f"The session's process on {self.node_id} is terminated. Work in progress is lost.",
            self._command("session.kill"),
            label="Kill",
        )

    def action_restart(self) -> None:
        self.heady.confirm_then(
            f"Restart session {self.session_id}?",
            f"The managed session on {self.node_id} is stopped and started again with its configured command.",
            self._command("session.restart"),
            label="Restart",
        )

    def action_pause(self) -> None:
        self._command("session.pause")()

    def action_resume(self) -> None:
        self._command("session.resume")()

    def action_prompt(self) -> None:
        def answered(text: str | None) -> None:
            if text:
                self._command("session.prompt", {"text": text})()

        self.app.push_screen(
            AskModal(f"Prompt {self.session_id}", "Text sent to the managed session:", placeholder="continue"),
            callback=answered,
        )

    def action_priority(self) -> None:
        rec = self.record
        if rec is None:
            self.notify("the console has no record of this session", severity="warning")
            return
        node, session = self.node_id, self.session_id

        def chosen(text: str | None) -> None:
            if not text:
                return
            priority = text.strip()
            self.heady.confirm_then(
                f"Set {session} to priority {priority}?",
                f"It stays {priority} whatever [[priority.rules]] say. High sessions count against the node's cap;"
                " background ones are reniced, then paused, while their node is loaded.",
                lambda: self.heady.act(f"priority of {session}", lambda: self.heady.operator.set_priority(node, session, priority),
                                       f"{session} is now {priority}"),
                label="Set",
            )

        self.app.push_screen(
            AskModal(f"Priority class of {session}", f"One of {', '.join(PRIORITY_CLASSES)}:", value=rec.priority,
                     validate=lambda text: None if text.strip() in PRIORITY_CLASSES else f"one of {', '.join(PRIORITY_CLASSES)}"),
            callback=chosen,
        )
