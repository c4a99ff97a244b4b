"""Small display widgets: status bar, equilibrium header, cost panel, event log, filter bar."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.visual import VisualType
from textual.widget import Widget
from textual.widgets import Input, RichLog, Static

from ...events import HeadyEvent
from .. import formatting as fmt
from ..theme import styled
from .spark import bar, sparkline


# What each widget shows now. Textual repaints the whole widget on every Static.update and every
# border title set, even to the same value; over SSH a repaint costs its bytes, so the unchanged
# ones are skipped.
_shown: WeakKeyDictionary[Widget, dict[str, object]] = WeakKeyDictionary()


def _changed(widget: Widget, slot: str, value: object) -> bool:
    shown = _shown.setdefault(widget, {})
    if slot in shown and shown[slot] == value:
        return False
    shown[slot] = value
    return True


def show(widget: Static, content: VisualType) -> None:
    """Static.update, skipped when the content is what the widget shows already."""
    if _changed(widget, "content", content):
        widget.update(content)


def set_title(widget: Widget, title: str, *, subtitle: bool = False) -> None:
    """Set a border title (or subtitle) as plain text, skipped when unchanged."""
    if not _changed(widget, "subtitle" if subtitle else "title", title):
        return
    text = Text(title)  # plain: titles carry node, session and filter text, never markup
    if subtitle:
        widget.border_subtitle = text
    else:
        widget.border_title = text


def _join(app, parts: Sequence[tuple[str, str | None]]) -> Text:
    text = Text(end="")
    for chunk, severity in parts:
        text.append_text(styled(app, chunk, severity) if severity else Text(chunk, end=""))
    return text


class StatusBar(Static):
    """One line: product, SIMULATED, the equilibrium level, nodes online, PAUSED, READ-ONLY, screen."""

    def show(self, parts: Sequence[tuple[str, str | None]]) -> None:
        show(self, _join(self.app, parts))


@dataclass(frozen=True)
class MetricLine:
    name: str
    label: str
    short: str
    value: float | None
    threshold: float
    critical: float
    severity: str
    state: str  # ok | pending | firing | unknown
    history: Sequence[float]
    trend: str = ""


class EquilibriumPanel(Static):
    """The fleet's level and, per metric: value, threshold, critical level, sparkline, state.

    Wide: one line per metric with its trend. Compact (80 columns): two metrics per line, the state
    as a mark after the value (~ pending, ! firing).
    """

    MARKS = {"pending": "~", "firing": "!"}

    def show(self, level: str, lines: Sequence[MetricLine], *, compact: bool, ascii_only: bool) -> None:
        set_title(self, f"Equilibrium: {level.upper()}")
        colour = self.app.theme_variables.get(f"sev-{fmt.level_severity(level)}")
        if _changed(self, "title-colour", colour):
            self.styles.border_title_color = colour
        width = self.content_size.width or self.app.size.width - 4
        if not lines:
            show(self, "waiting for the first evaluation...")
            return
        show(self, self._compact(lines, width, ascii_only) if compact else self._wide(lines, width, ascii_only))

    def _spark(self, line: MetricLine, width: int, ascii_only: bool) -> Text:
        high = max([line.critical, *line.history]) if line.history else line.critical
        return styled(self.app, sparkline(line.history, width, low=0.0, high=high, ascii_only=ascii_only), line.severity)

    def _wide(self, lines: Sequence[MetricLine], width: int, ascii_only: bool) -> Text:
        fixed = 14 + 8 + 12 + 12 + 9 + 22  # label, value, threshold, critical, state, trend
        spark_w = max(8, min(width - fixed, 60))
        text = Text(end="")
        for i, line in enumerate(lines):
            if i:
                text.append("\n")
            text.append(f"{line.label:<14}")
            text.append_text(styled(self.app, f"{fmt.metric_value(line.name, line.value):>8}", line.severity, bold=True))
            text.append(f"  thr {fmt.metric_value(line.name, line.threshold):>6}")
            text.append(f" crit {fmt.metric_value(line.name, line.critical):>6} ")
            text.append_text(self._spark(line, spark_w, ascii_only))
            # The state is followed by a space even at its longest ("degraded"), so it never runs
            # into the projection.
            text.append_text(styled(self.app, f" {line.state:<8}", line.severity))
            text.append(f" {line.trend:<21}"[:22])
        return text

    def _compact(self, lines: Sequence[MetricLine], width: int, ascii_only: bool) -> Text:
        column = max(30, width // 2)
        text = Text(end="")
        for i, line in enumerate(lines):
            if i and i % 2 == 0:
                text.append("\n")
            limits = f"{fmt.metric_value(line.name, line.threshold)}/{fmt.metric_value(line.name, line.critical)}"
            head = f"{line.short:<7}"
            value = f"{fmt.metric_value(line.name, line.value):>6}{self.MARKS.get(line.state, ' ')} "
            spark_w = max(4, column - len(head) - len(value) - len(limits) - 3)
            text.append(head)
            text.append_text(styled(self.app, value, line.severity, bold=True))
            text.append(f"{limits} ")
            text.append_text(self._spark(line, spark_w, ascii_only))
            text.append("  " if i % 2 == 0 else "")
        return text


class CostPanel(Static):
    def show(self, parts: Sequence[Sequence[tuple[str, str | None]]]) -> None:
        text = Text(end="")
        for i, line in enumerate(parts):
            if i:
                text.append("\n")
            text.append_text(_join(self.app, line))
        show(self, text)


def budget_line(label: str, spent: float, budget: float | None, width: int, ascii_only: bool) -> list[tuple[str, str | None]]:
    if not budget:
        return [(f"{label} {fmt.money(spent)} (no budget)", None)]
    fraction = spent / budget
    severity = "critical" if fraction >= 1 else "warning" if fraction >= 0.8 else "careful" if fraction >= 0.5 else "ok"
    return [
        (f"{label} ", None),
        (bar(fraction, width, ascii_only=ascii_only), severity),
        (f" {fmt.money(spent)}/{fmt.money(budget)} {fraction * 100:.0f}%", severity),
    ]


EVENT_SEVERITY = {
    "node.offline": "critical",
    "node.journal_reset": "warning",
    "node.online": "ok",
    "consent.requested": "warning",
    "consent.granted": "ok",
    "consent.denied": "careful",
    "rebalance.started": "warning",
    "rebalance.stopped": "ok",
    "policy.needs_attention": "warning",
    "task.failed": "critical",
    "budget.notice": "warning",
    "session.waiting": "warning",
}


def describe_event(event: HeadyEvent) -> str:
    """A one-line human form of a HeadyEvent: the most telling details first."""
    d = event.details
    keys = ("node", "level", "previous", "reason", "scope", "action", "target", "policy", "session",
            "strategy", "state", "task", "percent", "budget", "summary", "ok", "error")
    shown = [f"{k}={d[k]}" for k in keys if k in d and d[k] not in (None, "", [], {})]
    return " ".join(shown)


EVENT_WRAP_MIN = 20  # columns; a narrower log still wraps here rather than into single letters


class EventLog(RichLog):
    """The live log of HeadyEvents (newest at the bottom); keeps the last 500 lines."""

    # Periodic counters are for scripts reading the headless stream; in the log they would bury
    # what the operator needs to see.
    ROUTINE = frozenset({"ingest.stats"})

    def __init__(self, **kwargs) -> None:
        # Wrapped, not scrolled sideways: a long event is read whole, and no horizontal scrollbar
        # is repainted with every line.
        # RichLog wraps at no less than min_width (78 by default): wider than the side panel, so
        # the end of each wrapped line was cut off at the panel's edge.
        super().__init__(max_lines=500, wrap=True, markup=False, auto_scroll=True, min_width=EVENT_WRAP_MIN, **kwargs)

    def add(self, event: HeadyEvent) -> None:
        if event.name in self.ROUTINE:
            return
        line = Text(f"{fmt.clock_time(event.ts)} ", end="")
        severity = EVENT_SEVERITY.get(event.name)
        if event.name == "equilibrium.level":
            severity = fmt.level_severity(str(event.details.get("level")))
        line.append_text(styled(self.app, event.name, severity or "muted", bold=severity in ("warning", "critical")))
        line.append(" " + describe_event(event))
        self.write(line)

    def add_command(self, node: str, action: str, target: str | None, ok: bool, error: str | None, ts: float) -> None:
        """An operator's command and its answer, in the same log as the fleet's events."""
        line = Text(f"{fmt.clock_time(ts)} ", end="")
        line.append_text(styled(self.app, f"command {action}", "ok" if ok else "critical", bold=not ok))
        line.append(f" node={node}" + (f" target={target}" if target else "") + (" ok" if ok else f" error={error}"))
        self.write(line)


class FilterBar(Input):
    """The `/` filter: typing narrows the focused table; Enter keeps it, Esc clears it."""

    class Applied(Message):
        def __init__(self, text: str, done: bool) -> None:
            super().__init__()
            self.text = text
            self.done = done

    def __init__(self, **kwargs) -> None:
        super().__init__(placeholder="filter (Enter keeps, Esc clears)", **kwargs)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Applied(event.value, done=False))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Applied(event.value, done=True))

    def key_escape(self) -> None:
        self.value = ""
        self.post_message(self.Applied("", done=True))


class KeyBar(Static):
    """The key line at the bottom: what the screen on top offers now (the registry's bindings that
    are shown; dimmed when check_action says they do not apply), then the command palette key.

    One line of text, rewritten only when it changes: Textual's Footer remounts one widget per key
    whenever bindings are updated (every screen switch and focus change), which at 160 columns
    cost more than the rest of a screen switch together."""

    def on_mount(self) -> None:
        self._shown: tuple = ()
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def _bindings_changed(self, screen) -> None:
        if not self.is_attached or screen is not self.screen:
            return
        app = self.app
        active = screen.active_bindings
        entries = []
        seen_actions = set()
        # This screen's own keys first, then help, then the keys that work everywhere: on a
        # narrow terminal the line is cut at the end, and what is cut is one `?` away.
        ordered = sorted(
            active.values(),
            key=lambda b: (b.node is app, b.binding.action != "help"),
        )
        for node, binding, enabled, _ in ordered:
            if not binding.show or binding.action in seen_actions:
                continue
            seen_actions.add(binding.action)
            entries.append((app.get_key_display(binding), binding.description, enabled))
        palette = active.get(app.COMMAND_PALETTE_BINDING)
        if palette is not None and app.ENABLE_COMMAND_PALETTE:
            entries.append((app.get_key_display(palette.binding), palette.binding.description, palette.enabled))
        shown = (app.theme, tuple(entries))
        if shown == self._shown:
            return
        self._shown = shown
        key_colour = app.theme_variables.get("footer-key-foreground")
        text = Text(end="", no_wrap=True, overflow="ellipsis")
        for key, description, enabled in entries:
            text.append(f" {key} ", style=Style(color=key_colour, bold=True, dim=not enabled))
            text.append(f"{description} ", style=Style(dim=not enabled))
        self.update(text)
