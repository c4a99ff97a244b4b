"""The one registry of console actions.

It feeds every screen's BINDINGS (each Binding carries the action's id, so `[ui] keymap` can
remap keys through App.set_keymap), the `?` help screen and the command palette. Read-only mode
hides every action marked `changes_state`; destructive actions ask for confirmation first.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType

# Screen names; "app" actions work everywhere.
SCREENS = ("app", "overview", "node", "session", "costs", "healing", "permissions", "audit")


@dataclass(frozen=True)
class UiAction:
    id: str  # binding id and keymap key
    key: str
    description: str
    screen: str
    action: str  # Textual action string run on the screen (or the app for screen "app")
    destructive: bool = False
    changes_state: bool = False
    show: bool = True  # listed in the footer

    @property
    def action_name(self) -> str:
        return self.action.split("(", 1)[0]


ACTIONS: tuple[UiAction, ...] = (
    UiAction("overview", "1", "Overview", "app", "switch_view('overview')"),
    UiAction("costs", "2", "Costs", "app", "switch_view('costs')"),
    UiAction("healing", "3", "Healing", "app", "switch_view('healing')"),
    UiAction("permissions", "4", "Permissions", "app", "switch_view('permissions')"),
    UiAction("audit", "5", "Audit", "app", "switch_view('audit')"),
    UiAction("help", "question_mark", "Help", "app", "help"),
    UiAction("freeze", "f", "Freeze", "app", "toggle_freeze"),
    UiAction("filter", "slash", "Filter", "app", "filter"),
    UiAction("export", "e", "Export report", "app", "export_report"),
    UiAction("consent_view", "w", "Pending consent", "app", "view_consent"),
    UiAction("sort", "s", "Sort", "app", "sort(False)"),
    UiAction("sort_reverse", "S", "Reverse sort", "app", "sort(True)", show=False),
    UiAction("copy", "y", "Copy id", "app", "copy_id", show=False),
    UiAction("log", "l", "Log", "app", "show_log"),
    UiAction("redraw", "ctrl+l", "Redraw screen", "app", "redraw", show=False),
    UiAction("jump_waiting", "exclamation_mark", "Longest waiting", "app", "jump_waiting", show=False),  # the header shows it
    UiAction("back", "escape", "Back", "app", "back", show=False),
    # A node or session row opens its screen; any other row shows in full (what the table cut).
    UiAction("open", "enter", "Open / show row", "app", "open_row", show=False),
    UiAction("quit", "q", "Quit", "app", "quit"),
    UiAction("node_drain", "d", "Drain", "node", "drain", destructive=True, changes_state=True),
    UiAction("node_undrain", "u", "Undrain", "node", "undrain", changes_state=True),
    UiAction("node_concurrency", "c", "Concurrency", "node", "concurrency", changes_state=True),
    UiAction("node_pause", "p", "Pause", "node", "pause_session", destructive=True, changes_state=True),
    UiAction("node_renice", "r", "Renice", "node", "renice_session", changes_state=True),
    UiAction("session_kill", "k", "Kill", "session", "kill", destructive=True, changes_state=True),
    UiAction("session_pause", "p", "Pause", "session", "pause", changes_state=True),
    UiAction("session_resume", "u", "Resume", "session", "resume", changes_state=True),
    UiAction("session_restart", "r", "Restart", "session", "restart", destructive=True, changes_state=True),
    UiAction("session_prompt", "i", "Prompt", "session", "prompt", changes_state=True),
    UiAction("session_priority", "c", "Priority class", "session", "priority", changes_state=True),
    UiAction("cost_group", "b", "Group by", "costs", "next_group"),
    UiAction("task_approve", "a", "Approve", "healing", "approve", changes_state=True),
    UiAction("task_reject", "x", "Reject", "healing", "reject", changes_state=True),
    UiAction("policy_reset", "z", "Reset policy", "healing", "reset_policy", changes_state=True),
    UiAction("grant_revoke", "x", "Revoke", "permissions", "revoke", destructive=True, changes_state=True),
    UiAction("grants_all", "i", "Show inactive", "permissions", "toggle_inactive"),
    UiAction("audit_verify", "v", "Verify chain", "audit", "verify"),
)

_BY_ID = {action.id: action for action in ACTIONS}


def action(action_id: str) -> UiAction:
    return _BY_ID[action_id]


def actions_for(screen: str) -> list[UiAction]:
    return [a for a in ACTIONS if a.screen == screen]


def bindings_for(screen: str) -> list[BindingType]:
    return [
        Binding(a.key, a.action, a.description, show=a.show, id=a.id)
        for a in actions_for(screen)
    ]


def changes_state(screen: str, action_name: str) -> bool:
    """Whether running `action_name` on `screen` changes anything (hidden in read-only mode)."""
    return any(a.changes_state for a in actions_for(screen) if a.action_name == action_name)
