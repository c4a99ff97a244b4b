"""Account limits across machines: what the clients report and what the fleet spent, made into one
view per account and window. Pure.

Each session is attributed to an account (`SessionRecord.account`, from session.started). Clients
that know the account's limits report them (Codex with each response, Claude Code through its status
line): the store keeps each report (`LimitReport`). Where no client reports a window, the fleet's own
spend in it (`AccountUsage`, from the stored calls) against a configured budget is the estimate.
The brain derives `AccountWindow`s from both (`derive_windows`) and stores them; the Costs screen,
the report and `heady accounts` read those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

FIVE_HOUR = "5h"
WEEK = "week"
WINDOWS = (FIVE_HOUR, WEEK)
WINDOW_S = {FIVE_HOUR: 5 * 3600.0, WEEK: 7 * 86400.0}
OFFICIAL = "official"  # the client's own figure
ESTIMATE = "estimate"  # the fleet's spend against a configured budget
# Reports of one window with reset times this close are the same window (clients round differently).
SAME_RESET_S = 120.0
DAY_MINUTES = 24 * 60


def window_of(slot: str, minutes: int | None) -> str:
    """Which window a client's `primary`/`secondary` limit is: by its length when it says, else by slot."""
    if minutes is not None and minutes > 0:
        return FIVE_HOUR if minutes < DAY_MINUTES else WEEK
    return FIVE_HOUR if slot == "primary" else WEEK


@dataclass(frozen=True)
class LimitReport:
    """One window of an account's limit as a client reported it from one node."""

    account: str
    window: str
    ts: float
    node: str
    session: str | None
    used_percent: float
    window_minutes: int | None
    resets_at: float | None


@dataclass(frozen=True)
class AccountUsage:
    """The fleet's own spend on one account within one window, from the stored calls."""

    account: str
    window: str
    cost_usd: float
    recent_cost_usd: float  # within the burn window
    first_ts: float | None  # the oldest call counted: when it leaves the window, the spend drops
    nodes: tuple[str, ...]
    sessions: int
    plan: str | None = None


@dataclass(frozen=True)
class AccountWindow:
    """One account's window as the console shows it: derived once per refresh, stored, read by all."""

    account: str
    window: str  # 5h | week
    basis: str  # official | estimate
    used_percent: float | None  # None: an estimate without a configured budget
    used_usd: float  # the fleet's spend in the window
    limit_usd: float | None  # the configured budget of an estimate
    burn_percent_per_h: float | None  # at the current rate; None when unknown
    full_at: float | None  # when the limit is reached at the current rate (now when it is)
    resets_at: float | None
    nodes: tuple[str, ...]
    sessions: int
    plan: str | None
    updated: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["nodes"] = list(self.nodes)
        return out


def _burn(reports: list[LimitReport], now: float, burn_window_s: float) -> float | None:
    """Percent per hour over the burn window, from the first and last report of the same window."""
    recent = [r for r in reports if r.ts >= now - burn_window_s]
    if len(recent) < 2:
        return None
    first, last = recent[0], recent[-1]
    span = last.ts - first.ts
    if span <= 0:
        return None
    return max(0.0, (last.used_percent - first.used_percent) / span * 3600.0)


def _full_at(used: float | None, burn: float | None, now: float) -> float | None:
    if used is None:
        return None
    if used >= 100.0:
        return now
    if burn is None or burn <= 0:
        return None
    return now + (100.0 - used) / burn * 3600.0


def _current(reports: list[LimitReport], now: float) -> list[LimitReport]:
    """The reports of the window running now (oldest first): the newest report's, unless it has reset."""
    if not reports:
        return []
    latest = reports[-1]
    if latest.resets_at is not None and latest.resets_at <= now:
        return []
    if latest.resets_at is None and now - latest.ts >= WINDOW_S[latest.window]:
        return []

    def same(r: LimitReport) -> bool:
        if latest.resets_at is None or r.resets_at is None:
            return r.resets_at is latest.resets_at
        return abs(r.resets_at - latest.resets_at) <= SAME_RESET_S

    return [r for r in reports if same(r)]


def derive_windows(
    reports: Iterable[LimitReport],
    usages: Iterable[AccountUsage],
    budgets: Mapping[tuple[str, str], float],
    *,
    now: float,
    burn_window_s: float,
) -> list[AccountWindow]:
    """Every account's windows: official where a client reported the window running now, else the
    estimate (the fleet's spend against `budgets[(account, window)]` when configured)."""
    by_key: dict[tuple[str, str], list[LimitReport]] = {}
    for r in sorted(reports, key=lambda r: r.ts):
        by_key.setdefault((r.account, r.window), []).append(r)
    usage = {(u.account, u.window): u for u in usages}
    out = []
    for key in sorted(set(by_key) | set(usage)):
        account, window = key
        spent = usage.get(key)
        current = _current(by_key.get(key, []), now)
        nodes = set(spent.nodes if spent else ()) | {r.node for r in current}
        sessions = spent.sessions if spent else 0
        plan = spent.plan if spent else None
        used_usd = spent.cost_usd if spent else 0.0
        if current:
            latest = current[-1]
            burn = _burn(current, now, burn_window_s)
            out.append(AccountWindow(account, window, OFFICIAL, latest.used_percent, used_usd, None, burn,
                                     _full_at(latest.used_percent, burn, now), latest.resets_at, tuple(sorted(nodes)),
                                     sessions, plan, now))  # fmt: skip
            continue
        if spent is None:
            continue  # only reports of a window that has reset, and no spend since
        limit = budgets.get(key)
        used = spent.cost_usd / limit * 100.0 if limit else None
        burn = spent.recent_cost_usd / (burn_window_s / 3600.0) / limit * 100.0 if limit else None
        resets = spent.first_ts + WINDOW_S[window] if spent.first_ts is not None else None
        out.append(AccountWindow(account, window, ESTIMATE, used, used_usd, limit, burn, _full_at(used, burn, now), resets,
                                 tuple(sorted(nodes)), sessions, plan, now))  # fmt: skip
    return out


def window_from_dict(raw: Mapping[str, Any]) -> AccountWindow:
    """An AccountWindow as stored (`AccountWindow.to_dict`)."""
    values = dict(raw)
    values["nodes"] = tuple(values.get("nodes") or ())
    return AccountWindow(**values)


# --- one spelling of a window for the Costs screen, the report and `heady accounts` -------------

COLUMNS = ("account", "window", "basis", "used", "spent", "burn", "limit in", "resets", "nodes", "sessions")


def span(seconds: float) -> str:
    """45s, 12m, 3h05m, 2d04h."""
    seconds = max(0, int(seconds))
    minutes, hours = seconds // 60, seconds // 3600
    if seconds < 60:
        return f"{seconds}s"
    if minutes < 60:
        return f"{minutes}m"
    if hours < 24:
        return f"{hours}h{minutes % 60:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def utc_minute(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%MZ")


def limit_in(w: AccountWindow) -> str:
    """How long until the limit at the current rate: `now` when reached, `after reset` when the
    window resets first, `-` when the rate is unknown or nothing is used."""
    if w.full_at is None:
        return "-"
    if w.full_at <= w.updated:
        return "now"
    if w.resets_at is not None and w.full_at >= w.resets_at:
        return "after reset"
    return span(w.full_at - w.updated)


def window_cells(w: AccountWindow) -> list[str]:
    """The window's row, in COLUMNS order."""
    used = "-" if w.used_percent is None else f"{w.used_percent:.0f}%"
    spent = f"${w.used_usd:.2f}" + (f" of ${w.limit_usd:.2f}" if w.limit_usd is not None else "")
    burn = "-" if w.burn_percent_per_h is None else f"{w.burn_percent_per_h:.1f}%/h"
    resets = "-" if w.resets_at is None else utc_minute(w.resets_at)
    return [w.account, w.window, w.basis, used, spent, burn, limit_in(w), resets, ",".join(w.nodes) or "-", str(w.sessions)]
