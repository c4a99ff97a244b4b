"""Consent: permission grants for the rebalancer, denials that snooze a request, and request lifecycle.

A grant is `single` (one run), `session` (consent.session_hours, 24 h by default) or `persistent`
(until revoked). A single grant given in answer to a request is bound to that request's plan
fingerprint: if the plan changes materially, it does not cover the new plan and the console asks
again. The atomic "use once" lives in heady_tui.records (one conditional UPDATE); here are the rules.

One request lifecycle: while no operator is looking at a request, a re-evaluation that changes the
plan revises that same request; once a request is held (shown in a dialog) it is never changed,
expired or replaced under the operator: a changed plan becomes a new request that supersedes it,
and the held one stays answerable until the dialog closes (`revision`).
"""

from __future__ import annotations

import getpass
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any, Literal

from heady_tui.config import ConsentConfig

SCOPES = ("single", "session", "persistent")
DECISIONS = ("deny", *SCOPES)
REQUEST_STATES = ("requested", "granted", "denied", "expired")


class ConsentError(ValueError):
    """A bad consent input (unknown scope or decision, unknown id), reported as one line."""


@dataclass(frozen=True)
class Grant:
    id: str
    scope: str  # single | session | persistent
    grantor: str  # user@host
    created: float
    expires: float | None  # None: until revoked
    caps: dict[str, Any]
    uses: int
    max_uses: int | None  # 1 for single, None otherwise
    revoked: float | None  # when, or None
    reason: str
    fingerprint: str | None = None  # a single grant answering a request covers only that plan

    def status(self, now: float) -> str:
        """active | spent | expired | revoked"""
        if self.revoked is not None:
            return "revoked"
        if self.max_uses is not None and self.uses >= self.max_uses:
            return "spent"
        if self.expires is not None and now >= self.expires:
            return "expired"
        return "active"

    def covers(self, fingerprint: str, now: float) -> bool:
        return self.status(now) == "active" and (self.fingerprint is None or self.fingerprint == fingerprint)


@dataclass(frozen=True)
class Denial:
    id: str
    fingerprint: str
    grantor: str
    at: float
    snooze_until: float
    reason: str


@dataclass
class ConsentRequest:
    id: str
    created: float
    expires: float  # an unanswered request expires then (consent.request_timeout_s)
    reason: str
    fingerprint: str
    plan: dict[str, Any]  # RebalancePlan.to_dict(): priority, actions, targets, caps, estimated_duration_s, breaches
    state: str = "requested"  # requested | granted | denied | expired
    decided_at: float | None = None
    decision: str | None = None
    grant_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    superseded_by: str | None = None  # a newer request asks about a changed plan (this one was on screen)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def grantor() -> str:
    """user@host of whoever is deciding."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def new_grant(scope: str, *, now: float, config: ConsentConfig, reason: str, caps: dict[str, Any] | None = None,
              by: str | None = None, fingerprint: str | None = None) -> Grant:
    if scope not in SCOPES:
        raise ConsentError(f"unknown scope {scope!r} (known: {', '.join(SCOPES)})")
    expires = now + config.session_hours * 3600 if scope == "session" else None
    return Grant(
        id=new_id("g"),
        scope=scope,
        grantor=by or grantor(),
        created=now,
        expires=expires,
        caps=dict(caps or {}),
        uses=0,
        max_uses=1 if scope == "single" else None,
        revoked=None,
        reason=reason,
        fingerprint=fingerprint if scope == "single" else None,
    )


def new_denial(fingerprint: str, *, now: float, config: ConsentConfig, reason: str, by: str | None = None) -> Denial:
    return Denial(new_id("d"), fingerprint, by or grantor(), now, now + config.deny_snooze_s, reason)


def new_request(plan: dict[str, Any], fingerprint: str, *, now: float, config: ConsentConfig, reason: str) -> ConsentRequest:
    return ConsentRequest(new_id("r"), now, now + config.request_timeout_s, reason, fingerprint, plan)


def usable_grant(grants: list[Grant], fingerprint: str, now: float) -> Grant | None:
    """The grant a run should use: the narrowest active one that covers the plan (single before session)."""
    order = {"single": 0, "session": 1, "persistent": 2}
    covering = [g for g in grants if g.covers(fingerprint, now)]
    return min(covering, key=lambda g: (order[g.scope], g.created), default=None)


def snoozed(denials: list[Denial], fingerprint: str, now: float) -> Denial | None:
    return next((d for d in denials if d.fingerprint == fingerprint and now < d.snooze_until), None)


Revision = Literal["same", "revise", "supersede", "new"]


def revision(open_requests: list[ConsentRequest], held: set[str], fingerprint: str) -> tuple[Revision, ConsentRequest | None]:
    """How a re-evaluated plan meets the open requests (oldest first):

    same: the newest open request is about this plan already (returned); revise: the newest request is on no
    one's screen, so it is revised in place (returned); supersede: the newest is held in a dialog,
    so a new request supersedes it (returned); new: nothing is open, ask.
    """
    # Only the newest question counts: a superseded one that happens to match again stays as it was shown.
    newest = next((r for r in reversed(open_requests) if r.superseded_by is None), None)
    if newest is None:
        return "new", None
    if newest.fingerprint == fingerprint:
        return "same", newest
    return ("supersede" if newest.id in held else "revise"), newest
