"""When a session has waited for a person long enough to tell someone: once per wait.

A wait is a session's stay in the `waiting` state, known by when it began (SessionRecord.state_since,
the one place waiting time derives from). The supervisor asks on its liveness beat, on its clock.
"""

from __future__ import annotations

from .fleet import Fleet, SessionRecord

WaitKey = tuple[str, str, float]  # node, session, when the wait began


class WaitAlarm:
    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._told: set[WaitKey] = set()

    def due(self, fleet: Fleet, now: float) -> list[SessionRecord]:
        """Sessions that have waited `after_s` or more and were not told about in this wait, longest first."""
        waiting = fleet.waiting_sessions()
        self._told &= {(rec.node, rec.id, rec.state_since) for rec in waiting}  # forget waits that ended
        due = [
            rec for rec in waiting
            if now - rec.state_since >= self.after_s and (rec.node, rec.id, rec.state_since) not in self._told
        ]
        self._told.update((rec.node, rec.id, rec.state_since) for rec in due)
        return due
