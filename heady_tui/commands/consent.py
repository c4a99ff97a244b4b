"""`heady consent prompt "REASON"` (ask on this terminal) and `heady consent html "REASON"` (a static page).

Both show the plan a console captured for its pending request when there is one, else the caps any
rebalance runs under, and say which of the two they show. The prompt records its answer in the same
store and audit chain as the console's dialog; the page cannot grant anything and says how to.
"""

from __future__ import annotations

import argparse
import html
import os
import shlex
import sys
import termios
import tty
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from heady_agent.clock import Clock, SystemClock
from heady_tui.commands._engine_store import StoreError, with_records
from heady_tui.config import Config, Paths, load_config
from heady_tui.engine.consent import ConsentError, ConsentRequest, Denial
from heady_tui.engine.rebalance import Caps
from heady_tui.operator import RecordsOperator
from heady_tui.records import Records

# key -> decision; Enter and Escape deny, as the console dialog does.
KEYS = {"d": "deny", "n": "deny", "\r": "deny", "\n": "deny", "\x1b": "deny", "o": "single", "s": "session", "a": "persistent"}
SCOPE_TEXT = {
    "single": "allow once (one rebalance run)",
    "session": "allow for this session ({hours:g} h)",
    "persistent": "always allow (until revoked)",
}
# A prompt answered with no pending request has no plan to bind a denial to.
def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass(frozen=True)
class Subject:
    """What is being asked about: a console's pending request, or none (the caps only)."""

    request: ConsentRequest | None
    caps: dict[str, Any]

    @property
    def plan(self) -> dict[str, Any] | None:
        return self.request.plan if self.request else None


def _subject(requests: list[ConsentRequest], config: Config, now: float) -> Subject:
    pending = [r for r in requests if r.state == "requested" and r.expires > now]
    request = max(pending, key=lambda r: r.created, default=None)
    caps = dict(request.plan.get("caps") or {}) if request else asdict(Caps.from_config(config.rebalance))
    return Subject(request, caps)


def _action_lines(plan: dict[str, Any]) -> list[str]:
    lines = []
    for action in plan.get("actions", []):
        where = action.get("node", "?") + (f" -> {action['to_node']}" if action.get("to_node") else "")
        lines.append(action.get("note") or f"{action.get('action', '?')} on {where}")
    return lines


def describe(subject: Subject, reason: str, config: Config) -> list[str]:
    """The request and the plan as text lines (the terminal prompt and the page say the same)."""
    lines = [f"reason: {reason}"]
    req = subject.request
    if req is not None:
        plan = req.plan
        lines.append(f"pending request {req.id} from the console, opened {_when(req.created)}, expires {_when(req.expires)}")
        lines.append(f"console's reason: {req.reason}")
        lines.append(f"plan captured by the console: priority {plan.get('priority', '?')}, "
                     f"estimated {plan.get('estimated_duration_s', 0):g} s, targets {', '.join(plan.get('targets', [])) or '-'}")  # fmt: skip
        lines += [f"  - {line}" for line in _action_lines(plan)] or ["  (no actions)"]
        lines.append("a single grant covers exactly this plan; if the plan changes materially the console asks again")
    else:
        lines.append("no console has a pending request: there is no plan to show; a grant made here lets the")
        lines.append("rebalancer run whatever plan the equilibrium calls for, within these caps")
    caps = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in subject.caps.items())
    lines.append(f"caps: {caps}")
    lines.append(f"a run stops when balance holds for {config.rebalance.balanced_checks} checks or after {config.rebalance.max_duration_s:g} s")
    return lines


# --- the terminal prompt --------------------------------------------------------------------------


def _read_key(fd: int) -> str:
    """One keypress without Enter (cbreak mode), terminal settings restored whatever happens."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        data = os.read(fd, 1)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    if not data:
        raise EOFError
    return data.decode(errors="replace").lower()


def ask(read_key: Callable[[], str], write: Callable[[str], None], hours: float) -> str:
    options = "  [d] deny (Enter)   [o] allow once   [s] allow for this session ({h:g} h)   [a] always allow".format(h=hours)
    write(options + "\n? ")
    while True:
        key = read_key()
        if key == "\x03":
            raise KeyboardInterrupt
        decision = KEYS.get(key)
        if decision is not None:
            write(("deny" if decision == "deny" else SCOPE_TEXT[decision].format(hours=hours)) + "\n")
            return decision
        write(f"\n{key!r} is not an answer; press d, o, s, a or Enter\n? ")


async def record(records: Records, subject: Subject, decision: str, reason: str, config: Config, clock: Clock) -> str:
    """Store the answer exactly as the console's dialog would (audited); returns the line to print."""
    req = subject.request
    answer = await RecordsOperator(records, config, clock).decide_consent(req, decision, reason, subject.caps)
    if isinstance(answer, Denial):
        if req is None:
            return f"denied by {answer.grantor} (recorded in the audit trail)"
        return f"denied by {answer.grantor}; this request is snoozed until {_when(answer.snooze_until)}"
    expires = f", expires {_when(answer.expires)}" if answer.expires else ""
    return f"granted {answer.id} ({answer.scope}{expires}) by {answer.grantor}"


def _prompt(args: argparse.Namespace) -> int:
    if not sys.stdin.isatty():
        print("heady: error: consent prompt needs a terminal on stdin; use `heady permissions grant --scope ...` in scripts", file=sys.stderr)
        return 2
    fd = sys.stdin.fileno()

    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        now = clock.now()
        subject = _subject(await records.requests(now - config.consent.request_timeout_s), config, now)
        out = sys.stdout
        out.write("heady: permission to rebalance\n")
        for line in describe(subject, args.reason, config):
            out.write(f"  {line}\n")
        out.flush()

        def write(text: str) -> None:
            out.write(text)
            out.flush()

        try:
            decision = ask(lambda: _read_key(fd), write, config.consent.session_hours)
        except EOFError:
            decision = "deny"
            write("(end of input: deny)\n")
        write(await record(records, subject, decision, args.reason, config, clock) + "\n")
        return 0 if decision != "deny" else 1

    return with_records(args, body)


# --- the static page ------------------------------------------------------------------------------


def _command(args: argparse.Namespace, *words: str) -> str:
    """A heady command line aimed at the same config and data dir as this one."""
    words = ("heady", *words)
    if args.config:
        words += ("--config", args.config)
    if args.data_dir:
        words += ("--data-dir", args.data_dir)
    return shlex.join(words)


_PAGE_CSS = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 760px; margin: 2rem auto; padding: 0 1rem; color: #111827; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.05rem; margin-top: 1.6rem; }
.note { background: #eff6ff; border-left: 4px solid #2563eb; padding: .6rem .9rem; }
pre { background: #f3f4f6; padding: .6rem .8rem; overflow-x: auto; user-select: all; }
ul.plan li { font-family: ui-monospace, monospace; font-size: 13px; }
"""


def render_page(subject: Subject, args: argparse.Namespace, config: Config) -> str:
    e = html.escape
    plan = subject.plan
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>heady: permission to rebalance</title><style>{_PAGE_CSS}</style></head><body>",
        "<h1>heady asks for permission to rebalance the fleet</h1>",
        f"<p><strong>Reason:</strong> {e(args.reason)}</p>",
        '<p class="note" id="static">This page is a static file: it cannot grant or deny anything by itself. '
        "To answer, run one of the commands below on the machine where the heady console keeps its data "
        "(or answer in the console, or with <code>heady consent prompt</code> there).</p>",
        '<h2 id="plan">What would run</h2>',
    ]
    if plan is not None and subject.request is not None:
        out.append(f"<p>The console's pending request <code>{e(subject.request.id)}</code> (opened {e(_when(subject.request.created))}, "
                   f"expires {e(_when(subject.request.expires))}) captured this plan: priority <strong>{e(str(plan.get('priority', '?')))}</strong>, "
                   f"estimated {plan.get('estimated_duration_s', 0):g} s.</p>")  # fmt: skip
        actions = _action_lines(plan)
        out.append('<ul class="plan">' + "".join(f"<li>{e(a)}</li>" for a in actions) + "</ul>" if actions else "<p>(no actions)</p>")
        out.append("<p>A grant made with <code>heady permissions grant</code> is not tied to this plan: "
                   "it covers whatever plan the equilibrium calls for, within the caps below.</p>")  # fmt: skip
    else:
        out.append("<p>No console has a pending request, so there is no plan to show. A grant lets the rebalancer run "
                   "whatever plan the equilibrium calls for, within these caps.</p>")  # fmt: skip
    out.append('<h2 id="caps">Caps</h2><ul>' + "".join(f"<li>{e(k)}: {e(str(v))}</li>" for k, v in subject.caps.items()) + "</ul>")
    out.append(f"<p>A run stops when balance holds for {config.rebalance.balanced_checks} checks or after {config.rebalance.max_duration_s:g} s; "
               "reversible changes are undone when it stops.</p>")  # fmt: skip
    out.append('<h2 id="commands">To answer</h2>')
    for scope in ("single", "session", "persistent"):
        label = SCOPE_TEXT[scope].format(hours=config.consent.session_hours)
        out.append(f'<p><strong>{e(label[0].upper() + label[1:])}</strong></p><pre id="grant-{scope}">{e(_command(args, "permissions", "grant", "--scope", scope, "--reason", args.reason))}</pre>')
    out.append("<p><strong>Deny</strong>: do nothing (an unanswered request expires), or answer <em>deny</em> in the console or with "
               f"<code>{e(_command(args, 'consent', 'prompt', args.reason))}</code>.</p>")  # fmt: skip
    out.append("<p>Grants can be listed with <code>heady permissions list</code> and revoked with "
               "<code>heady permissions revoke ID</code>.</p>")  # fmt: skip
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html(args: argparse.Namespace) -> int:
    paths = Paths.resolve(args.config, args.data_dir)
    config = load_config(paths)
    if not paths.database.exists():  # nothing recorded yet: the caps alone, without creating a database
        now = SystemClock().now()
        sys.stdout.write(render_page(_subject([], config, now), args, config))
        return 0

    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        now = clock.now()
        subject = _subject(await records.requests(now - config.consent.request_timeout_s), config, now)
        sys.stdout.write(render_page(subject, args, config))
        return 0

    return with_records(args, body)


def run(args: argparse.Namespace) -> int:
    try:
        return _prompt(args) if args.verb == "prompt" else _html(args)
    except (StoreError, ConsentError) as exc:
        print(f"heady: error: {exc}", file=sys.stderr)
        return 1
