"""The consent dialog: may the rebalancer run this plan?

What it shows is captured when it opens (the request's own plan, held by the brain while the dialog
is open), so the operator answers the plan that will run. If the plan changes materially meanwhile,
the brain asks with a new request: the dialog then says "superseded by a newer plan", its own plan
stays answerable, and `p` closes it to show the newer one. Deny has the focus: Enter, `n` and `esc`
deny; `o` allows once, `s` for this session (24 h), `a` always.
"""

from __future__ import annotations

import time

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from .. import formatting as fmt
from ..widgets.panels import KeyBar

DECISIONS = ("deny", "single", "session", "persistent")
NEWER_PLAN = "newer"  # dismissed to see the request that superseded this one
ANSWERED_ELSEWHERE = "answered-elsewhere"  # closed: another console answered it, or it expired
SUPERSEDED_NOTE = "Superseded by a newer plan: p shows it; this plan can still be answered."


def describe_action(action: dict[str, Any]) -> str:
    """One planned action: the planner's own sentence when it wrote one, and the agent command."""
    command = str(action.get("action") or action.get("kind"))
    if action.get("note"):
        return f"{action['note']}  [{command}]"
    parts = [command]
    if action.get("target"):
        parts.append(f"session {action['target']}")
    parts.append(f"on {action.get('node')}")
    if action.get("to_node"):
        parts.append(f"-> {action['to_node']}")
    if action.get("count"):
        parts.append(f"x{action['count']}")
    if action.get("value") is not None:
        parts.append(f"= {action['value']}")
    return " ".join(parts)


CAP_FORMATS = {
    "max_cpu_percent": "target CPU at most {:g}%",
    "max_memory_mb": "target free memory at least {:g} MB",
    "max_duration_s": "run at most {:g} s",
    "max_moves_per_step": "at most {:g} items moved per step",
}


def describe_cap(key: str, value: Any) -> str:
    template = CAP_FORMATS.get(key)
    if template is not None and isinstance(value, (int, float)):
        return template.format(value)
    return f"{key} {value}"


def plan_text(reason: str, plan: dict[str, Any], levels: dict[str, tuple[float, float]], session_hours: float) -> str:
    lines = [f"Reason: {reason}", f"Priority: {plan.get('priority', '?')}", "", "Breached:"]
    for name, value in sorted((plan.get("breaches") or {}).items()):
        threshold, critical = levels.get(name, (None, None))
        if threshold is not None and value < threshold:
            continue  # the plan carries every metric's value; the dialog names the ones over their line
        limits = "" if threshold is None else f" (threshold {fmt.metric_value(name, threshold)}, critical {fmt.metric_value(name, critical)})"
        lines.append(f"  {name} = {fmt.metric_value(name, value)}{limits}")
    actions = plan.get("actions") or []
    lines += ["", f"Plan ({len(actions)} actions):"]
    lines += [f"  {i}. {describe_action(a)}" for i, a in enumerate(actions, 1)]
    targets = plan.get("targets") or []
    lines.append(f"Targets: {', '.join(targets) if targets else '-'}")
    caps = plan.get("caps") or {}
    if caps:
        lines.append("Caps: " + ", ".join(describe_cap(key, value) for key, value in caps.items()))
    # The steps take about this long; the run then watches for balance until max_duration_s at most.
    longest = caps.get("max_duration_s")
    tail = f", then watching for balance for up to {fmt.duration(longest)} in all" if isinstance(longest, (int, float)) else ""
    lines.append(f"Estimated duration: steps {fmt.duration(plan.get('estimated_duration_s'))}{tail}")
    excluded = plan.get("excluded") or {}
    for node, why in sorted(excluded.items()):
        lines.append(f"Excluded: {node} ({why})")
    lines += ["", f"Allow for this session = {session_hours:g} h; Always = until revoked."]
    return "\n".join(lines)


# The dialog opens over whatever the operator is doing; keys typed in this first moment were aimed
# at the screen below and must not answer it.
INPUT_GUARD_S = 0.6


class ConsentModal(ModalScreen[str]):
    """Dismisses with one of DECISIONS."""

    # The screen focuses this when it opens; focusing from on_mount races the screen's own
    # auto-focus, which can pick the scrolling body instead.
    AUTO_FOCUS = "#deny"

    BINDINGS = [
        Binding("n", "decide('deny')", "Deny", id="consent_deny"),
        Binding("escape", "decide('deny')", "Deny", show=False, id="consent_deny_esc"),
        Binding("o", "decide('single')", "Allow once", id="consent_once"),
        Binding("s", "decide('session')", "Allow session", id="consent_session"),
        # Shift-a: a lasting grant takes a deliberate key, and `a` stays "approve" on Healing below.
        Binding("A", "decide('persistent')", "Always allow", id="consent_always"),
        Binding("p", "newer_plan", "Newer plan", id="consent_newer"),
    ]

    def __init__(self, request: Any, *, levels: dict[str, tuple[float, float]], session_hours: float) -> None:
        super().__init__()
        self.request_id: str = request.id
        self.is_superseded = False
        self._text = plan_text(request.reason, request.plan, levels, session_hours)
        self._session_label = f"{session_hours:g} h (s)"  # what "session" means, on the button itself
        account = request.plan.get("account")
        # The limit_guard asks through the same dialog: its plan pauses one account's sessions.
        self._title = (f"Permission to pause the sessions of {account} until its window resets?"
                       if isinstance(account, str) else "Permission to rebalance the fleet?")
        self.opened_at = time.monotonic()  # made when the request is shown: pushed at once

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-danger", id="consent"):
            yield Static(Text(self._title, end=""), classes="dialog-title")
            yield Static(SUPERSEDED_NOTE, id="consent-superseded", markup=False)
            with VerticalScroll(classes="dialog-body"):
                yield Static(Text(self._text, end=""), id="consent-plan")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Deny (n)", id="deny", variant="primary")
                yield Button("Once (o)", id="single")
                yield Button(self._session_label, id="session")
                yield Button("Always (A)", id="persistent", variant="error")
        yield KeyBar(classes="modal-keys")

    def on_mount(self) -> None:
        self.query_one("#consent-superseded", Static).display = False

    def superseded(self) -> None:
        """The brain asked about a newer plan: say so and offer it (`p`)."""
        if self.is_superseded:
            return
        self.is_superseded = True
        self.query_one("#consent-superseded", Static).display = True
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.is_superseded if action == "newer_plan" else True

    def guarded(self) -> bool:
        """Just opened: a key press now was meant for the screen below, not for this dialog."""
        return time.monotonic() - self.opened_at < INPUT_GUARD_S

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if not self.guarded():
            self.dismiss(event.button.id)

    def action_decide(self, decision: str) -> None:
        if not self.guarded():
            self.dismiss(decision)

    def action_newer_plan(self) -> None:
        self.dismiss(NEWER_PLAN)


READ_ONLY_NOTE = (
    "This console is read-only: it cannot answer. Answer in a console without --read-only, "
    "or with `heady consent prompt` / `heady permissions grant` on the console's machine."
)


class ConsentViewModal(ModalScreen[None]):
    """The pending requests and their exact plans, view only (a read-only console's `w`)."""

    # The screen focuses this when it opens; focusing from on_mount races the screen's own
    # auto-focus, which can pick the scrolling body instead.
    AUTO_FOCUS = "#close"

    BINDINGS = [
        Binding("escape", "close", "Close", id="consent_view_close"),
        Binding("w", "close", "Close", show=False, id="consent_view_close_w"),
    ]

    def __init__(self, requests: list[Any], *, levels: dict[str, tuple[float, float]], session_hours: float) -> None:
        super().__init__()
        self.request_ids = [request.id for request in requests]
        blocks = [
            f"Request {request.id}\n{plan_text(request.reason, request.plan, levels, session_hours)}" for request in requests
        ]
        self._text = "\n\n".join(blocks)

    def compose(self) -> ComposeResult:
        count = len(self.request_ids)
        with Vertical(classes="dialog", id="consent-view"):
            yield Static(f"Consent pending ({count} request{'s' if count != 1 else ''}): view only", classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(Text(self._text, end=""), id="consent-plan")
            yield Static(READ_ONLY_NOTE, id="consent-view-note", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (esc)", id="close", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
