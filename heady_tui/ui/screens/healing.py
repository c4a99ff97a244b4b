"""Healing: the approvals queue (tasks waiting for approval, highest priority first, then policies
that need attention), the repair tasks and the open weak points (critical first, coloured by
severity). `a` approves, `x` rejects, `z` resets a policy."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical

from .. import formatting as fmt
from ..views import ViewCell
from ..widgets.table import KeyedTable
from .base import LiveScreen

APPROVAL_COLUMNS = (("kind", "Kind"), ("priority", "Priority"), ("what", "What"), ("subject", "Subject"), ("since", "Since"),
                    ("why", "Why"))
TASK_COLUMNS = (("id", "Task"), ("strategy", "Strategy"), ("subject", "Subject"), ("state", "State"), ("updated", "Updated"), ("result", "Result"))
CYCLE_COLUMNS = (("time", "Time"), ("kind", "Kind"), ("weak", "Weak pts"), ("tasks", "Tasks"), ("summary", "Summary"))
WEAK_COLUMNS = (("severity", "Severity"), ("subject", "Subject"), ("analyzer", "Analyzer"), ("strategy", "Strategy"),
                ("opened", "Open for"), ("issues", "Issues"))
TASK_SEVERITY = {
    "suggested": "careful",
    "pending-approval": "warning",
    "dispatched": "careful",
    "done": "ok",
    "failed": "critical",
    "expired": "muted",
}
# A task's priority and a weak point's severity as the console's severity colours.
PRIORITY_SEVERITY = {"low": None, "normal": None, "high": "warning", "critical": "critical"}
WEAK_SEVERITY = {"warning": "warning", "critical": "critical"}


def task_key(task_id: str) -> str:
    return f"task\x1f{task_id}"


def policy_key(node: str, session: str, policy: str) -> str:
    return f"policy\x1f{node}\x1f{session}\x1f{policy}"


class HealingScreen(LiveScreen):
    VIEW = "healing"
    TITLE_TEXT = "Healing"

    def __init__(self, *, compact: bool) -> None:
        super().__init__(name="healing")
        self.compact = compact

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        approvals = KeyedTable(APPROVAL_COLUMNS, id="approvals", fit=("what", "subject", "why"))
        approvals.border_title = "Approvals queue (a approve, x reject, z reset policy)"
        yield approvals
        with Vertical(classes="split"):
            tasks = KeyedTable(TASK_COLUMNS, id="tasks", fit=("subject", "result"))
            tasks.border_title = "Repair tasks"
            yield tasks
            weak = KeyedTable(WEAK_COLUMNS, id="weak-points", fit=("subject", "issues"))
            weak.border_title = "Weak points"
            yield weak
            if not self.compact:
                cycles = KeyedTable(CYCLE_COLUMNS, id="cycles", fit=("summary",))
                cycles.border_title = "Healing cycles"
                yield cycles
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.part("#approvals", KeyedTable).focus()
        self.refresh_view()

    def refresh_view(self) -> None:
        app = self.heady
        brain = app.supervisor.brain
        if brain is None:
            app.update_status(self)
            return
        now = app.reader.now()
        tasks = brain.tasks()
        approvals: dict[str, tuple] = {}
        for task in brain.awaiting_approval():
            approvals[task_key(task.id)] = (
                ("task", "warning"),
                (task.priority, PRIORITY_SEVERITY[task.priority]),
                (task.strategy, None),
                (task.subject, None),
                (fmt.duration(now - task.created), None),
                (task.recommendation, None),
            )
        for item in brain.needs_attention():
            approvals[policy_key(item.node, item.session, item.policy)] = (
                ("policy", "critical"),
                ("-", None),
                (item.policy, None),
                (f"{item.node}/{item.session}", None),
                (fmt.duration(now - item.since), None),
                (f"{item.attempts} attempts; last: {item.last_outcome or '-'}", None),
            )
        self.part("#approvals", KeyedTable).sync(app.cells(approvals))
        task_rows: dict[str, tuple[ViewCell, ...]] = {}
        for task in sorted(tasks, key=lambda t: -t.updated)[:200]:
            task_rows[task.id] = (
                (task.id, None),
                (task.strategy, None),
                (task.subject, None),
                (task.state, TASK_SEVERITY.get(task.state)),
                (fmt.duration(now - task.updated) + " ago", None),
                (task.result or "", None),
            )
        self.part("#tasks", KeyedTable).sync(app.cells(task_rows))
        weak_rows: dict[str, tuple[ViewCell, ...]] = {}
        for wp in brain.weak_points():  # open ones, critical first, then the longest open
            weak_rows[wp.id] = (
                (wp.severity, WEAK_SEVERITY[wp.severity]),
                (wp.subject, None),
                (wp.analyzer, None),
                (wp.strategy, None),
                (fmt.duration(now - wp.opened), None),
                ("; ".join(wp.issues)[:100], None),
            )
        self.part("#weak-points", KeyedTable).sync(app.cells(weak_rows))
        if not self.compact:
            cycles = {}
            for cycle in reversed(brain.healing_cycles(50)):
                cycles[cycle.id] = (
                    fmt.clock_time(cycle.at),
                    cycle.kind,
                    str(len(cycle.weak_points)),
                    str(len(cycle.tasks_created)),
                    Text(cycle.summary, end=""),
                )
            self.part("#cycles", KeyedTable).sync(cycles)
        app.update_status(self)

    def _selected(self) -> list[str] | None:
        key = self.part("#approvals", KeyedTable).selected_key
        if key is None:
            self.notify("the approvals queue is empty", severity="warning")
            return None
        return key.split("\x1f")

    def action_approve(self) -> None:
        parts = self._selected()
        if parts is None:
            return
        if parts[0] != "task":
            self.notify("a policy is reset with z, not approved", severity="warning")
            return
        task_id = parts[1]
        brain = self.heady.supervisor.brain
        task = next((t for t in brain.tasks() if t.id == task_id), None) if brain is not None else None

        def approve() -> None:
            self.heady.act(f"approve task {task_id}", lambda: self.heady.operator.approve_task(task_id),
                           f"task {task_id} approved")

        if task is None or len(task.commands) <= 1:
            approve()
            return
        # One key that acts on many sessions or nodes asks first, with the count.
        what = command_summary(task.commands)
        self.heady.confirm_then(
            f"Approve task {task_id}? It sends {what}.",
            f"{task.strategy} on {task.subject}: {task.recommendation}",
            approve,
            label=f"Approve ({what})",
        )

    def action_reject(self) -> None:
        parts = self._selected()
        if parts is None:
            return
        if parts[0] != "task":
            self.notify("a policy is reset with z, not rejected", severity="warning")
            return
        task_id = parts[1]
        self.heady.act(f"reject task {task_id}", lambda: self.heady.operator.reject_task(task_id), f"task {task_id} rejected")

    def action_reset_policy(self) -> None:
        parts = self._selected()
        if parts is None:
            return
        if parts[0] != "policy":
            self.notify("select a policy that needs attention", severity="warning")
            return
        _, node, session, policy = parts
        self.heady.act(f"reset {policy}", lambda: self.heady.operator.reset_policy(node, session, policy),
                       f"{policy} reset for {session}")


def command_summary(commands: list[dict]) -> str:
    """"16 sessions" / "3 nodes" / "2 sessions and 1 node": what a task's commands act on."""
    sessions = {(c.get("node"), c.get("target")) for c in commands if c.get("target")}
    nodes = {c.get("node") for c in commands if not c.get("target")}
    parts = []
    if sessions:
        parts.append(f"{len(sessions)} session{'s' if len(sessions) != 1 else ''}")
    if nodes:
        parts.append(f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}")
    return " and ".join(parts) or f"{len(commands)} commands"
