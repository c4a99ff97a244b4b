"""limit_guard: an account near a limit gets a notice; a full one a consent request to pause its
running sessions until the window resets, and they are resumed after the reset.

Decides only: the brain (brain/account_limits.py) asks, pauses, records and resumes. A notice is
news once while a window stays at or over the warn share; the pause question is asked
again on every evaluation while the window stays full, and the consent desk tells a repeat from a
changed question.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from heady_tui.accounts import AccountWindow
from heady_tui.config import LimitGuardConfig


@dataclass(frozen=True)
class LimitNotice:
    account: str
    window: str
    basis: str
    used_percent: float
    used_usd: float
    limit_usd: float | None
    resets_at: float | None

    @property
    def budget(self) -> str:
        """The name budget.notice gives it."""
        return f"account {self.account} {self.window}"


@dataclass(frozen=True)
class PauseNeed:
    """A window at the pause share: the account's running sessions should wait for its reset."""

    account: str
    window: str
    basis: str
    used_percent: float
    resets_at: float


@dataclass
class PausedAccount:
    """An account whose sessions the guard paused (with consent), until `until`."""

    account: str
    window: str
    until: float
    sessions: list[tuple[str, str]]  # (node, session) paused
    request: str
    grant: str
    paused_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "PausedAccount":
        values = dict(raw)
        values["sessions"] = [(str(n), str(s)) for n, s in values.get("sessions", [])]
        return cls(**values)


@dataclass
class LimitGuard:
    config: LimitGuardConfig
    noticed: set[tuple[str, str]] = field(default_factory=set)  # (account, window) at or over warn_share
    paused: dict[str, PausedAccount] = field(default_factory=dict)  # account -> its pause

    def evaluate(self, windows: list[AccountWindow], now: float) -> tuple[list[LimitNotice], list[PauseNeed]]:
        """Notices due now (once each time a window crosses the warn share), and the full windows.
        A paused account's full window is named again: sessions that started since the pause are
        asked about too (the brain leaves out those already paused)."""
        notices: list[LimitNotice] = []
        needs: list[PauseNeed] = []
        if not self.config.enabled:
            return notices, needs
        self.noticed &= {(w.account, w.window) for w in windows}
        for w in windows:
            if w.used_percent is None:
                continue
            share = w.used_percent / 100.0
            key = (w.account, w.window)
            if share < self.config.warn_share:
                self.noticed.discard(key)
            elif key not in self.noticed:
                self.noticed.add(key)
                notices.append(LimitNotice(w.account, w.window, w.basis, w.used_percent, w.used_usd, w.limit_usd, w.resets_at))
            full = share >= self.config.pause_share
            if full and w.resets_at is not None and w.resets_at > now:
                needs.append(PauseNeed(w.account, w.window, w.basis, w.used_percent, w.resets_at))
        return notices, needs

    def due(self, now: float) -> list[PausedAccount]:
        """Paused accounts whose window has reset: their sessions are to be resumed."""
        return [p for p in self.paused.values() if now >= p.until]

    def export_state(self) -> dict[str, Any]:
        return {"noticed": sorted(list(k) for k in self.noticed), "paused": [p.to_dict() for p in self.paused.values()]}

    def import_state(self, raw: dict[str, Any]) -> None:
        self.noticed = {(str(a), str(w)) for a, w in raw.get("noticed", [])}
        self.paused = {p.account: p for p in (PausedAccount.from_dict(x) for x in raw.get("paused", []))}
