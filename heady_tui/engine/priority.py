"""Priority classes at work on each node: the cap on high-priority sessions (the gate the agent's
managed queue applies) and load shedding of background sessions. Pure: config, the time and the
fleet's facts in, decisions out; the brain sends them (heady_tui/brain/priority_exec.py).

Load shedding, per node, on the detector's load signal (load1 per core): loaded at or above
`loaded_utilisation` for `loaded_for_s` -> its background sessions are reniced to
`background_nice`; still loaded `pause_after_s` later -> they are paused; below
`unloaded_utilisation` for `clear_s` -> what was done is undone (resumed, then the nice value the
agent reported before the renice). Between the two levels nothing changes (hysteresis).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from heady_tui.config import PriorityConfig

HIGH = "high"
BACKGROUND = "background"
NONE, RENICED, PAUSED = "none", "reniced", "paused"  # a node's shedding stage


@dataclass(frozen=True)
class PriorityGate:
    """What a node's agent is told (`queue.set_priority`): queued items of the `high` managed names
    start only while fewer than `cap` high sessions run, counting `others` it cannot see as high
    (high sessions of other sources, or managed ones an operator made high)."""

    high: tuple[str, ...]
    cap: int
    others: int

    def args(self) -> dict[str, Any]:
        return {"high": list(self.high), "cap": self.cap, "others": self.others}


@dataclass(frozen=True)
class SessionFacts:
    """What shedding needs of one live session on a node."""

    id: str
    state: str
    nice: int | None
    priority: str


@dataclass(frozen=True)
class NodeLoad:
    node: str
    online: bool
    utilisation: float | None  # load1 / cores; None without metrics
    sessions: tuple[SessionFacts, ...] = ()


@dataclass(frozen=True)
class ShedStep:
    """One command of load shedding or of its revert. `stage` is what the node's shedding is at."""

    node: str
    session: str
    action: str  # session.renice | session.pause | session.resume
    args: dict[str, Any]
    stage: str
    reason: str


@dataclass
class NodeShedding:
    """A node's shedding: its stage and what was changed on which session (to undo it)."""

    stage: str = NONE
    loaded_since: float | None = None
    calm_since: float | None = None
    stage_since: float = 0.0
    reniced: dict[str, int] = field(default_factory=dict)  # session -> nice before
    paused: list[str] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)  # "action session" that failed this episode: not again


def gate_for(high_names: list[str], sessions: list[tuple[str | None, str]], cap: int) -> PriorityGate:
    """The gate of one node: `high_names` are its managed names whose class is high; `sessions` are
    its live sessions' (managed name, class)."""
    high = tuple(sorted(high_names))
    others = sum(1 for managed, cls in sessions if cls == HIGH and (managed is None or managed not in high))
    return PriorityGate(high, cap, others)


class LoadShedder:
    def __init__(self, cfg: PriorityConfig) -> None:
        self.cfg = cfg
        self.nodes: dict[str, NodeShedding] = {}

    def export_state(self) -> dict[str, Any]:
        return {node: asdict(st) for node, st in self.nodes.items() if st.stage != NONE or st.reniced or st.paused}

    def import_state(self, raw: dict[str, Any]) -> None:
        self.nodes = {node: NodeShedding(**st) for node, st in raw.items()}

    def evaluate(self, loads: list[NodeLoad], now: float) -> list[ShedStep]:
        steps: list[ShedStep] = []
        for load in loads:
            if not load.online or load.utilisation is None:
                continue  # nothing is judged, or undone, on a node that is not reporting
            st = self.nodes.setdefault(load.node, NodeShedding())
            util = load.utilisation
            if util >= self.cfg.loaded_utilisation:
                st.calm_since = None
                st.loaded_since = now if st.loaded_since is None else st.loaded_since
                steps += self._shed(load, st, now)
            elif util < self.cfg.unloaded_utilisation:
                st.loaded_since = None
                if st.stage != NONE or st.reniced or st.paused:
                    st.calm_since = now if st.calm_since is None else st.calm_since
                    if now - st.calm_since >= self.cfg.clear_s:
                        steps += self._revert(load, st, now)
            else:
                st.loaded_since = st.calm_since = None
        return steps

    def _shed(self, load: NodeLoad, st: NodeShedding, now: float) -> list[ShedStep]:
        assert st.loaded_since is not None
        if st.stage == NONE and now - st.loaded_since >= self.cfg.loaded_for_s:
            st.stage, st.stage_since = RENICED, now
        elif st.stage == RENICED and now - st.stage_since >= self.cfg.pause_after_s:
            st.stage, st.stage_since = PAUSED, now
        if st.stage == NONE:
            return []
        why = f"{load.node} loaded: load per core {load.utilisation:.2f} >= {self.cfg.loaded_utilisation:g}"
        steps = []
        nice = self.cfg.background_nice
        for s in load.sessions:
            if s.priority != BACKGROUND:
                continue
            if s.id not in st.reniced and (s.nice or 0) < nice and f"session.renice {s.id}" not in st.tried:
                steps.append(ShedStep(load.node, s.id, "session.renice", {"nice": nice}, st.stage, why))
            if st.stage == PAUSED and s.state == "running" and s.id not in st.paused and f"session.pause {s.id}" not in st.tried:
                steps.append(ShedStep(load.node, s.id, "session.pause", {}, st.stage, why))
        return steps

    def _revert(self, load: NodeLoad, st: NodeShedding, now: float) -> list[ShedStep]:
        """Undo the episode on the sessions still there: resume first, then the nice value back."""
        live = {s.id for s in load.sessions}
        why = f"{load.node} no longer loaded: load per core {load.utilisation:.2f} < {self.cfg.unloaded_utilisation:g}"
        steps = [ShedStep(load.node, sid, "session.resume", {}, NONE, why) for sid in st.paused if sid in live]
        steps += [ShedStep(load.node, sid, "session.renice", {"nice": before}, NONE, why)
                  for sid, before in st.reniced.items() if sid in live]
        # Each revert is tried once; one that fails is reported, not repeated every tick.
        self.nodes[load.node] = NodeShedding()
        return steps

    def applied(self, step: ShedStep, ok: bool, detail: dict[str, Any]) -> None:
        """The outcome of a shedding step (reverts leave nothing to record)."""
        st = self.nodes.get(step.node)
        if st is None or step.stage == NONE:
            return
        if not ok:
            st.tried.append(f"{step.action} {step.session}")
            return
        if step.action == "session.renice":
            previous = detail.get("previous")
            if isinstance(previous, int) and not isinstance(previous, bool):  # an agent that does not say has nothing to revert to
                st.reniced[step.session] = previous
        elif step.action == "session.pause":
            st.paused.append(step.session)
