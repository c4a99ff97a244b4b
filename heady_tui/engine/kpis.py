"""Rebalancing KPIs, computed once from stored rebalance runs and consent requests.

Targets are the rebalancing guide's: grant rate 80 %, success rate 95 %, restore time 60 s,
CPU during runs at most 80 %, activations 0. Report, console and `heady kpis` all read `rebalance_kpis`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from heady_tui.engine.consent import ConsentRequest

GRANT_RATE_TARGET = 0.80
SUCCESS_RATE_TARGET = 0.95
RESTORE_TIME_TARGET_S = 60.0
CPU_DURING_RUNS_CAP_PERCENT = 80.0
ACTIVATION_TARGET = 0


@dataclass(frozen=True)
class Kpi:
    name: str
    value: float | None  # None: nothing in range to measure
    target: float
    # "min": the value should be at least the target; "max": at most
    direction: str
    unit: str

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.target if self.direction == "min" else self.value <= self.target

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}


def rebalance_kpis(runs: Sequence[Mapping[str, Any]], requests: Sequence[ConsentRequest]) -> list[Kpi]:
    """`runs` are Records.rebalances rows, `requests` Records.requests over the same range."""
    decided = [r for r in requests if r.state in ("granted", "denied")]
    granted = sum(1 for r in decided if r.state == "granted")
    finished = [r for r in runs if r.get("restored") is not None]
    restored = [r for r in finished if r["restored"]]
    peaks = [float(r["peak_cpu_percent"]) for r in runs if r.get("peak_cpu_percent") is not None]
    times = [float(r["time_to_restore_s"]) for r in restored if r.get("time_to_restore_s") is not None]
    return [
        Kpi("permission grant rate", granted / len(decided) if decided else None, GRANT_RATE_TARGET, "min", "ratio"),
        Kpi("rebalancing success rate", len(restored) / len(finished) if finished else None, SUCCESS_RATE_TARGET, "min", "ratio"),
        Kpi("equilibrium restore time", max(times) if times else None, RESTORE_TIME_TARGET_S, "max", "s"),
        Kpi("CPU during runs", max(peaks) if peaks else None, CPU_DURING_RUNS_CAP_PERCENT, "max", "percent"),
        Kpi("activation count", float(len(runs)), ACTIVATION_TARGET, "max", "count"),
    ]
