"""Each session's test runs (test.run, judged ok or failed by the ledger) over the healing window,
for the test-failure trigger. Fed run by run as the store stores them; refilled from the store at start."""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

RUNS_KEPT = 10_000  # per session: far more than a window holds; a flood must not grow memory without end


@dataclass(frozen=True)
class TestRunSummary:
    """A session's test runs in the window."""

    __test__ = False  # not a pytest test class where a test module imports it

    runs: int = 0
    failed: int = 0


class SessionTestRuns:
    """(ts, ok) of each session's runs of the last `keep_s`, oldest first."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._sessions: dict[tuple[str, str], deque[tuple[float, bool]]] = {}

    def add(self, key: tuple[str, str], ts: float, ok: bool) -> None:
        runs = self._sessions.get(key)
        if runs is None:
            runs = self._sessions[key] = deque(maxlen=RUNS_KEPT)
        if not runs or runs[-1][0] <= ts:
            runs.append((ts, ok))
        else:  # a late run (a replayed journal): kept in time order
            runs.insert(bisect.bisect_right([t for t, _ in runs], ts), (ts, ok))

    def summary(self, key: tuple[str, str], now: float) -> TestRunSummary:
        runs = self._sessions.get(key)
        if runs is None:
            return TestRunSummary()
        horizon = now - self.keep_s
        while runs and runs[0][0] < horizon:
            runs.popleft()
        if not runs:
            del self._sessions[key]
            return TestRunSummary()
        return TestRunSummary(len(runs), sum(1 for _, ok in runs if not ok))
