"""The simulated node behind `heady demo`: sessions, a work queue and host load, all made up.

One agent plays node `node_index` of a fleet of `node_count`. Simulated time advances in fixed
steps of STEP_S, driven by the injected clock (`speed` simulated seconds per clock second), so
a run is deterministic for a seed and a test can drive it with a ManualClock and `tick()`.
The scenario picks the workload; the commands act on it for real, so moving queued work,
pausing a hot session or killing a runaway one changes what the console measures next.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError
from ..protocol import Command, QueueItem, SessionInfo
from .base import CommandError, SessionSource
from ..aio import cancel_and_wait
from .common import command_args, session_info, started_data

STEP_S = 0.25  # simulated seconds per step
TICK_S = 0.1  # clock seconds between ticks of the driving task
TASK = "sim-task"  # the one managed name a simulated node defines
CPU_COUNT = 8
MEM_TOTAL = 32 * 1024**3
WORKER_IDLE_END_S = 10.0  # a worker with nothing to do for this long exits
COMPACT_AT_TOKENS = 170_000
COMPACTED_FOR_S = 2.0  # how long a session shows `compacted` before it carries on
# node-loss: the node warns (a critical agent.notice) this many simulated seconds before it goes dark,
# as a host whose link is failing would, so the console's event-triggered healing cycle runs.
DARK_WARNING_S = 5.0
# Load time constants (simulated seconds): shorter than a real kernel's 1/5/15 minutes so a
# scenario shows its shape within half a minute.
LOAD_TAUS = (5.0, 20.0, 60.0)

PROJECTS = (
    "api-gateway",
    "billing-service",
    "web-frontend",
    "data-pipeline",
    "auth-service",
    "search-indexer",
    "mobile-app",
    "infra",
)
TITLES = (
    "fix flaky integration test",
    "add pagination to the orders endpoint",
    "migrate config loading to pydantic",
    "investigate memory growth in the worker",
    "write tests for the retry policy",
    "upgrade the http client",
    "refactor the session cache",
    "document the deploy procedure",
)
# (model, provider, weight) for interactive and queue sessions.
MODELS = (
    ("claude-sonnet-4-5", "anthropic", 0.5),
    ("claude-haiku-4-5", "anthropic", 0.15),
    ("claude-opus-4-5", "anthropic", 0.1),
    ("gpt-5-codex", "openai", 0.25),
)
PROVIDER_OF = {model: provider for model, provider, _ in MODELS}

# Host demand (runnable processes) of a session in each role while it runs.
DEMAND = {"task": 0.6, "chat": 0.5, "build": 2.5, "runaway": 0.8, "review": 0.5}
DEMAND_TASK_FREE = 0.1
DEMAND_IDLE = 0.05
DEMAND_BASE = 0.4
# Seconds between llm.calls of a running session, per role (low, high).
CALL_EVERY = {"task": (2.0, 3.5), "chat": (2.5, 4.5), "build": (4.0, 6.0), "runaway": (1.2, 1.8), "review": (12.0, 20.0)}
REVIEW_MODEL = "claude-opus-4-5"  # a review session thinks long on a big model: over $0.50 a call
BALLOON_MODEL = "claude-haiku-4-5"  # cheap per token, so a balloon spikes tokens without a cost trigger
BALLOON_GROWTH = 1.2  # a ballooning chat's uncached input grows this much a call...
BALLOON_MAX_TOKENS = 150_000  # ...up to this
# Share of a session's calls after which it runs its project's tests, per role; and what it runs.
TEST_RUN_SHARE = {"task": 0.1, "chat": 0.1, "build": 0.5, "runaway": 0.0, "review": 0.0}
TEST_COMMANDS = {
    "api-gateway": ("go", "go test ./..."),
    "billing-service": ("pytest", "pytest -q"),
    "web-frontend": ("npm", "npm test"),
    "data-pipeline": ("pytest", "python -m pytest tests"),
    "auth-service": ("go", "go test ./..."),
    "search-indexer": ("cargo", "cargo test"),
    "mobile-app": ("yarn", "yarn test"),
    "infra": ("pytest", "pytest -q"),
    "monorepo": ("pnpm", "pnpm test"),
}


@dataclass(frozen=True)
class Profile:
    """What one simulated node does in a scenario."""

    initial_queue: int = 0
    arrival_per_s: float = 3.0
    burst_per_s: float = 0.0  # arrivals during the opening burst, instead of arrival_per_s
    burst_until_s: float = 0.0
    arrival_jitter: bool = True  # random arrivals around the rate; False: exactly the rate
    concurrency: int = 4
    item_steps: int = 2  # steps a worker spends on one queued item
    chats: int = 2
    builds: int = 0
    runaway_at_s: float | None = None
    rate_limited: str | None = None  # provider that answers 429
    rate_limit_share: float = 0.0
    slow_provider: str | None = None
    latency_median_ms: float = 900.0
    slow_median_ms: float = 7000.0
    slow_doubling_s: float | None = None  # the slow provider's median doubles this often...
    slow_max_ms: float = 120_000.0  # ...up to this
    review: bool = False  # an opus review session: over $0.50 a call, a call every 12-20 s
    balloon_at_s: float | None = None  # a haiku chat whose uncached input balloons from then on
    test_failure_share: float = 0.0  # share of test runs that fail
    blips: bool = False  # occasional queue bursts, slow calls and errors
    idle_after_s: tuple[float, float] | None = None  # chats go idle within this window
    awake_for_s: tuple[float, float] = (45.0, 90.0)  # after a wake-up, before idling again
    compaction: bool = False
    dark_at_s: float | None = None
    dark_for_s: float = 20.0


def profile_for(scenario: str, index: int, count: int) -> Profile:
    first = index == 0
    if scenario == "calm":
        return Profile(blips=True)
    if scenario == "queue-overflow":
        if first:
            # 800 queued, net +14/s for 30 s (past 1000 at ~14 s, ~1220 at 30 s); afterwards arrivals
            # match what 4 workers serve, so the backlog stays put until work moves or concurrency rises.
            return Profile(
                initial_queue=800,
                burst_per_s=22.0,
                burst_until_s=30.0,
                arrival_per_s=8.0,
                arrival_jitter=False,
            )
        return Profile(arrival_per_s=3.0)
    if scenario == "error-storm":
        return Profile(arrival_per_s=6.0, rate_limited="anthropic", rate_limit_share=0.35)
    if scenario == "hot-node":
        if first:
            # Under the load, a quarter of its test runs fail (timeouts).
            return Profile(initial_queue=200, arrival_per_s=6.0, concurrency=6, builds=4, test_failure_share=0.25)
        return Profile()
    if scenario == "slow-provider":
        return Profile(slow_provider="anthropic", slow_doubling_s=60.0)
    if scenario == "runaway-cost":
        if first:
            return Profile(runaway_at_s=2.0)
        if index == 1:
            return Profile(review=True, balloon_at_s=120.0)
        return Profile()
    if scenario == "idle-sessions":
        return Profile(chats=3, idle_after_s=(5.0, 20.0))
    if scenario == "compaction":
        return Profile(compaction=True)
    if scenario == "node-loss":
        lost = 1 if count > 1 else 0
        return Profile(dark_at_s=15.0 if index == lost else None)
    raise ConfigError(f"agent.synthetic.scenario: unknown scenario {scenario!r}")


@dataclass
class SimSession:
    id: str
    role: str  # task (queue worker), chat (interactive), build (background load), runaway
    project: str
    model: str
    title: str
    pid: int
    started: float  # wall time
    state: str = "running"
    nice: int = 0
    next_call: float = 0.0  # simulated time
    context_tokens: int = 20_000
    growth: tuple[int, int] = (1_000, 3_000)
    idle_at: float | None = None
    state_until: float | None = None  # end of a transient `compacted`
    paused_from: str = "running"
    balloon_tokens: float = 0.0  # uncached input of a ballooning chat's next call (0: not ballooning)
    item: dict[str, Any] | None = None
    item_left: int = 0
    free_since: float = 0.0
    prompts: int = 0

    @property
    def provider(self) -> str:
        return PROVIDER_OF[self.model]

    @property
    def account(self) -> str:
        """One made-up subscription per provider: the fleet's sessions share it across nodes."""
        return f"synthetic:{self.provider}"

    @property
    def cwd(self) -> str:
        return f"/home/dev/src/{self.project}"


@dataclass
class _Counters:
    sessions: int = 0
    items: int = 0
    arrivals: float = 0.0  # fractional arrivals carried between steps


@dataclass
class _Load:
    averages: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    cpu: float = 0.0
    primed: bool = False


class SyntheticSource(SessionSource):
    name = "synthetic"
    simulated = True
    has_queue = True

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        cfg = ctx.config.synthetic
        if cfg.node_index >= cfg.node_count:
            raise ConfigError(
                f"agent.synthetic.node_index: {cfg.node_index} is not below node_count {cfg.node_count}"
            )
        self.scenario = cfg.scenario
        self.index = cfg.node_index
        self.count = cfg.node_count
        self.speed = cfg.speed
        self.hostname = f"sim-{cfg.node_index + 1}"
        self.profile = profile_for(cfg.scenario, cfg.node_index, cfg.node_count)
        self._rng = random.Random(f"heady-synthetic:{cfg.seed}:{cfg.node_index}:{cfg.scenario}")
        # Test runs draw from their own generator, so they leave the rest of a seeded run as it was.
        self._tests_rng = random.Random(f"heady-synthetic-tests:{cfg.seed}:{cfg.node_index}:{cfg.scenario}")
        self._balloon: SimSession | None = None
        self._sessions: dict[str, SimSession] = {}
        self._queue: deque[dict[str, Any]] = deque()
        self._concurrency = self.profile.concurrency
        self._drained = False
        self._counters = _Counters()
        self._load = _Load()
        self._step = 0  # steps simulated so far
        self._mono0 = 0.0
        self._wall0 = 0.0
        self._prefix = self.hostname
        self._began = False
        self._dark_warned = False
        self._dark_done = False
        self._runaway_spawned = False
        self._changed = False
        self._task: asyncio.Task[None] | None = None

    # --- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self.begin()
        self._task = asyncio.create_task(self._drive(), name=f"synthetic-{self.hostname}")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None

    def begin(self) -> None:
        """Set time zero and the opening workload (start() calls this; tests may call it directly)."""
        if self._began:
            return
        self._began = True
        self._mono0 = self.ctx.clock.monotonic()
        self._wall0 = self.ctx.clock.now()
        # A restarted agent must not reuse the session ids of its previous run.
        run = int(self.ctx.get_state("synthetic.run") or 0) + 1
        self.ctx.set_state("synthetic.run", str(run))
        if run > 1:
            self._prefix = f"{self.hostname}-r{run}"
        with self.ctx.atomic():
            for _ in range(self.profile.initial_queue):
                self._queue.append(self._new_item())
            for _ in range(self.profile.chats):
                self._spawn("chat")
            for _ in range(self.profile.builds):
                self._spawn("build")
            if self.profile.review:
                self._spawn("review")
            self._simulate_step()
        self._flush_changes()

    async def _drive(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(TICK_S)

    def tick(self) -> None:
        """Simulate every step up to the clock's present; events of a tick commit together."""
        self.begin()
        target = int((self.ctx.clock.monotonic() - self._mono0) * self.speed / STEP_S)
        if target <= self._step:
            return
        with self.ctx.atomic():
            while self._step < target:
                self._step += 1
                self._simulate_step()
        self._flush_changes()

    @property
    def sim_time(self) -> float:
        """Simulated seconds since start."""
        return self._step * STEP_S

    def _ts(self) -> float:
        return self._wall0 + self.sim_time / self.speed

    def _flush_changes(self) -> None:
        if self._changed:
            self._changed = False
            self.ctx.sessions_changed()

    # --- one step -----------------------------------------------------------------------

    def _simulate_step(self) -> None:
        t = self.sim_time
        p = self.profile
        if p.dark_at_s is not None and not self._dark_warned and t >= p.dark_at_s - DARK_WARNING_S:
            self._dark_warned = True
            self.ctx.notice("critical", f"{self.hostname}: network link failing (simulated); "
                                        f"unreachable in {DARK_WARNING_S:.0f} s for {p.dark_for_s:.0f} s")
        if p.dark_at_s is not None and not self._dark_done and t >= p.dark_at_s:
            self._dark_done = True
            self.ctx.go_dark(p.dark_for_s / self.speed)
        self._arrivals(t)
        self._work_queue(t)
        if p.runaway_at_s is not None and not self._runaway_spawned and t >= p.runaway_at_s:
            # Spawned once: a killed runaway stays dead.
            self._runaway_spawned = True
            self._spawn("runaway")
        if p.balloon_at_s is not None and self._balloon is None and t >= p.balloon_at_s:
            chats = [s for s in self._sessions.values() if s.role == "chat" and s.model == BALLOON_MODEL]
            if chats:  # once: the haiku chat starts sending its whole, growing context uncached
                self._balloon = chats[0]
                chats[0].balloon_tokens = 1_000.0
        for session in list(self._sessions.values()):
            self._advance_session(session, t)
        self._update_load()

    def _arrivals(self, t: float) -> None:
        p = self.profile
        rate = p.burst_per_s if t < p.burst_until_s else p.arrival_per_s
        expected = rate * STEP_S
        if p.arrival_jitter:
            expected *= self._rng.uniform(0.0, 2.0)
        if p.blips and self._rng.random() < STEP_S / 120.0:
            expected += self._rng.randint(20, 40)
        self._counters.arrivals += expected
        whole = int(self._counters.arrivals)
        self._counters.arrivals -= whole
        for _ in range(whole):
            self._queue.append(self._new_item())

    def _new_item(self) -> dict[str, Any]:
        self._counters.items += 1
        return {"managed": TASK, "args": [f"job-{self.hostname}-{self._counters.items}"]}

    def _work_queue(self, t: float) -> None:
        workers = [s for s in self._sessions.values() if s.role == "task"]
        for worker in workers:
            if worker.item is not None and worker.state != "paused":
                worker.item_left -= 1
                if worker.item_left <= 0:
                    worker.item = None
                    worker.free_since = t
        # Workers above the limit leave as soon as they hold no item.
        excess = len(workers) - self._concurrency
        for worker in sorted(workers, key=lambda w: w.free_since):
            if excess <= 0:
                break
            if worker.item is None:
                self._end(worker, 0, "concurrency lowered")
                workers.remove(worker)
                excess -= 1
        if not self._drained:
            free = sorted(
                (w for w in workers if w.item is None and w.state != "paused"), key=lambda w: w.free_since
            )
            for worker in free:
                if not self._queue:
                    break
                self._take_item(worker)
            while self._queue and len(workers) < self._concurrency:
                worker = self._spawn("task")
                workers.append(worker)
                self._take_item(worker)
        for worker in workers:
            if worker.item is None and worker.state != "paused" and t - worker.free_since >= WORKER_IDLE_END_S:
                self._end(worker, 0, "drained" if self._drained else "queue empty")

    def _take_item(self, worker: SimSession) -> None:
        worker.item = self._queue.popleft()
        worker.item_left = self.profile.item_steps

    def _advance_session(self, s: SimSession, t: float) -> None:
        if s.id not in self._sessions or s.state == "paused":
            return
        if s.state == "compacted" and s.state_until is not None and t >= s.state_until:
            s.state_until = None
            self._set_state(s, "running", "compaction finished")
        if s.state == "running" and s.idle_at is not None and t >= s.idle_at:
            s.idle_at = None
            self._set_state(s, "idle", "waiting for input")
            return
        if s.state == "idle" or t < s.next_call:
            return
        if s.role == "task" and s.item is None:
            return
        self._call(s, t)
        lo, hi = CALL_EVERY[s.role]
        s.next_call = t + self._rng.uniform(lo, hi)

    # --- sessions -----------------------------------------------------------------------

    def _spawn(self, role: str, like: SimSession | None = None) -> SimSession:
        self._counters.sessions += 1
        rng = self._rng
        t = self.sim_time
        if like is not None:
            project, model, title = like.project, like.model, like.title
        elif role == "runaway":
            project, model, title = "monorepo", "claude-opus-4-5", "migrate every service to the new SDK"
        elif role == "build":
            project, model, title = rng.choice(PROJECTS), "claude-sonnet-4-5", "run the full test matrix"
        elif role == "review":
            project, model, title = rng.choice(PROJECTS), REVIEW_MODEL, "review the whole diff of the release branch"
        elif role == "chat" and self.profile.balloon_at_s is not None and not any(
                s.model == BALLOON_MODEL and s.role == "chat" for s in self._sessions.values()):
            project, model, title = rng.choice(PROJECTS), BALLOON_MODEL, rng.choice(TITLES)
        else:
            model = rng.choices([m for m, _, _ in MODELS], weights=[w for _, _, w in MODELS])[0]
            project = rng.choice(PROJECTS)
            title = f"queue item on {project}" if role == "task" else rng.choice(TITLES)
        session = SimSession(
            id=f"{self._prefix}-{role}-{self._counters.sessions}",
            role=role,
            project=project,
            model=model,
            title=title,
            pid=rng.randint(2_000, 60_000),
            started=self._ts(),
            next_call=t + rng.uniform(0.0, CALL_EVERY[role][1]),
            free_since=t,
        )
        p = self.profile
        if role == "chat" and p.compaction:
            session.context_tokens = rng.randint(130_000, 165_000)
            session.growth = (8_000, 14_000)
        else:
            session.context_tokens = rng.randint(15_000, 40_000)
        if role == "chat" and p.idle_after_s is not None:
            session.idle_at = t + rng.uniform(*p.idle_after_s)
        self._sessions[session.id] = session
        self.ctx.emit(
            "session.started",
            session.id,
            started_data(self.name, session, managed=TASK if role == "task" else None, account=session.account),
            ts=self._ts(),
        )
        self._changed = True
        return session

    def _end(self, s: SimSession, exit_code: int, reason: str) -> None:
        if s.item is not None:
            # Work a worker held goes back to the front of the queue; nothing is lost with it.
            self._queue.appendleft(s.item)
            s.item = None
        del self._sessions[s.id]
        self.ctx.emit("session.ended", s.id, {"exit_code": exit_code, "reason": reason}, ts=self._ts())
        self._changed = True

    def _set_state(self, s: SimSession, state: str, reason: str) -> None:
        s.state = state
        self.ctx.emit("session.state", s.id, {"state": state, "reason": reason}, ts=self._ts())
        self._changed = True

    def _call(self, s: SimSession, t: float) -> None:
        rng = self._rng
        p = self.profile
        provider = s.provider
        data: dict[str, Any] = {
            "provider": provider,
            "model": s.model,
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_tokens": 0,
            "cache_read_tokens": 0,
            "cost_usd": None,
            "ok": True,
            "error": None,
        }
        failed: str | None = None
        if p.rate_limited == provider and rng.random() < p.rate_limit_share:
            failed = "rate_limit"
        elif p.blips and rng.random() < 0.005:
            failed = "overloaded"
        if failed:
            data.update(ok=False, error=failed, latency_ms=round(rng.uniform(150, 900), 1))
            self.ctx.emit("llm.call", s.id, data, ts=self._ts())
            return
        median = p.latency_median_ms
        if p.slow_provider == provider:
            median = p.slow_median_ms
            if p.slow_doubling_s is not None:  # a provider getting steadily worse
                median = min(p.slow_max_ms, median * 2 ** (t / p.slow_doubling_s))
        latency = median * math.exp(rng.gauss(0.0, 0.3))
        if p.blips and rng.random() < 0.02:
            latency *= 3
        if s.role == "runaway":
            data.update(
                input_tokens=rng.randint(120_000, 180_000),
                cache_creation_tokens=rng.randint(60_000, 100_000),
                output_tokens=rng.randint(16_000, 32_000),
            )
        elif s.role == "review":
            data.update(
                input_tokens=rng.randint(3, 60),
                cache_creation_tokens=rng.randint(40_000, 60_000),
                cache_read_tokens=s.context_tokens,
                output_tokens=rng.randint(12_000, 20_000),
            )
        elif provider == "openai":
            data.update(
                input_tokens=rng.randint(2_000, 12_000),
                cache_read_tokens=int(s.context_tokens * 0.8),
                output_tokens=rng.randint(200, 2_500),
            )
        else:
            data.update(
                input_tokens=rng.randint(3, 60),
                cache_creation_tokens=rng.randint(*s.growth),
                cache_read_tokens=s.context_tokens,
                output_tokens=rng.randint(150, 1_800),
            )
        if s.balloon_tokens:
            data["input_tokens"] = int(s.balloon_tokens)
            s.balloon_tokens = min(BALLOON_MAX_TOKENS, s.balloon_tokens * BALLOON_GROWTH)
        if provider == "anthropic":
            data.update(cache_creation_5m_tokens=data["cache_creation_tokens"], cache_creation_1h_tokens=0)
        data["latency_ms"] = round(latency, 1)
        self.ctx.emit("llm.call", s.id, data, ts=self._ts())
        self._maybe_run_tests(s)
        s.context_tokens += rng.randint(*s.growth)
        if s.context_tokens >= COMPACT_AT_TOKENS:
            s.context_tokens = rng.randint(35_000, 50_000)
            s.state_until = t + COMPACTED_FOR_S
            self._set_state(s, "compacted", "auto")

    def _maybe_run_tests(self, s: SimSession) -> None:
        """Now and then a session runs its project's tests (a `test.run`); they fail at the profile's share."""
        rng = self._tests_rng
        if rng.random() >= TEST_RUN_SHARE[s.role]:
            return
        runner, command = TEST_COMMANDS.get(s.project, ("pytest", "pytest -q"))
        total = 20 + sum(map(ord, s.project)) % 300  # a project's suite keeps its size
        failed = rng.randint(1, 3) if rng.random() < self.profile.test_failure_share else 0
        data = {"runner": runner, "command": command, "exit_code": 1 if failed else 0, "passed": total - failed,
                "failed": failed}
        self.ctx.emit("test.run", s.id, data, ts=self._ts())

    # --- load ---------------------------------------------------------------------------

    def _demand(self, s: SimSession) -> float:
        if s.state == "paused":
            return 0.0
        if s.state == "idle":
            return DEMAND_IDLE
        if s.role == "task" and s.item is None:
            base = DEMAND_TASK_FREE
        else:
            base = DEMAND[s.role]
        # A reniced session yields the CPU to others: at nice 19 it gets a quarter of its share.
        return base * (1.0 - 0.75 * max(0, s.nice) / 19)

    def _update_load(self) -> None:
        demand = DEMAND_BASE + sum(self._demand(s) for s in self._sessions.values())
        demand = max(0.0, demand + self._rng.gauss(0.0, 0.05))
        load = self._load
        if not load.primed:
            load.averages = [demand, demand, demand]
            load.primed = True
        for i, tau in enumerate(LOAD_TAUS):
            alpha = 1.0 - math.exp(-STEP_S / tau)
            load.averages[i] += alpha * (demand - load.averages[i])
        load.cpu = min(100.0, max(0.0, demand / CPU_COUNT * 85.0 + self._rng.uniform(0.0, 3.0)))

    # --- what the agent reads -------------------------------------------------------------

    def node_info(self) -> dict[str, Any]:
        return {
            "id": self.hostname,
            "hostname": self.hostname,
            "os": "Linux (simulated)",
            "cpu_count": CPU_COUNT,
            "mem_total": MEM_TOTAL,
        }

    def host_metrics(self) -> dict[str, Any]:
        live = len(self._sessions)
        builds = sum(1 for s in self._sessions.values() if s.role == "build")
        mem = min(97.0, 28.0 + 2.2 * live + 6.0 * builds)
        return {
            "cpu": round(self._load.cpu, 1),
            "load": [round(v, 2) for v in self._load.averages],
            "mem": round(mem, 1),
            "swap": round(1.0 + max(0.0, mem - 80.0) * 2.0, 1),
            "mem_available": int(MEM_TOTAL * (100.0 - mem) / 100.0),
            "procs": 180 + 12 * live,
            "queue_depth": len(self._queue),
        }

    def process_rows(self) -> list[dict[str, Any]]:
        rows = []
        for s in self._sessions.values():
            rows.append(
                {
                    "pid": s.pid,
                    "name": "codex" if s.provider == "openai" else "claude",
                    "user": "dev",
                    "cpu": round(self._demand(s) * 100.0, 1),
                    "rss": (180 + 40 * (s.pid % 7)) * 1024**2,
                    "session": s.id,
                }
            )
        rows.sort(key=lambda r: r["cpu"], reverse=True)
        return rows

    def sessions(self) -> list[SessionInfo]:
        return [
            session_info(self.name, s, managed=TASK if s.role == "task" else None, account=s.account)
            for s in self._sessions.values()
        ]

    def owns(self, session_id: str) -> bool:
        return session_id in self._sessions

    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def concurrency(self) -> int:
        return self._concurrency

    @property
    def drained(self) -> bool:
        return self._drained

    # --- commands -----------------------------------------------------------------------

    async def command(self, cmd: Command) -> dict[str, Any]:
        args = command_args(cmd)
        with self.ctx.atomic():
            detail = self._command(cmd, args)
        self._flush_changes()
        return detail

    def _command(self, cmd: Command, args: Any) -> dict[str, Any]:
        action = cmd.action
        if action.startswith("session."):
            session = self._sessions.get(cmd.target or "")
            if session is None:
                raise CommandError("unknown_session", f"no session {cmd.target!r} on {self.hostname}")
            return self._session_command(action, session, args)
        if action == "node.drain" or action == "node.undrain":
            previous = self._drained
            self._drained = action == "node.drain"
            return {"drained": self._drained, "previous": previous}
        if action == "node.set_concurrency":
            self._check_managed(args.managed)
            was = self._concurrency
            self._concurrency = args.value
            return {"managed": TASK, "concurrency": args.value, "previous": was}
        if action == "queue.move":
            self._check_managed(args.managed)
            taken = [self._queue.pop() for _ in range(min(args.count, len(self._queue)))]
            taken.reverse()
            return {"items": taken, "remaining": len(self._queue)}
        if action == "queue.accept":
            return self._accept(args.items)
        raise CommandError("not_supported", f"{action} is not supported by the {self.name} source")

    def _check_managed(self, managed: str | None) -> None:
        if managed is not None and managed != TASK:
            raise CommandError("unknown_managed", f"{self.hostname} defines no managed command {managed!r}")

    def _accept(self, items: list[QueueItem]) -> dict[str, Any]:
        rejected = []
        accepted = 0
        for item in items:
            if item.managed == TASK:
                self._queue.append(item.model_dump())
                accepted += 1
            else:
                rejected.append(item.model_dump())
        return {"accepted": accepted, "rejected": rejected, "queue_depth": len(self._queue)}

    def _session_command(self, action: str, s: SimSession, args: Any) -> dict[str, Any]:
        t = self.sim_time
        if action == "session.kill":
            self._end(s, -9, "killed")
            return {"session": s.id, "state": "completed"}
        if action == "session.pause":
            if s.state != "paused":
                s.paused_from = s.state
                self._set_state(s, "paused", "paused by command")
            return {"session": s.id, "state": "paused"}
        if action == "session.resume":
            if s.state in ("paused", "idle"):
                self._wake(s, t, "resumed by command")
            return {"session": s.id, "state": s.state}
        if action == "session.restart":
            self._end(s, -15, "restarted")
            fresh = self._spawn(s.role, like=s)
            return {"session": fresh.id, "replaces": s.id, "state": fresh.state}
        if action == "session.prompt":
            if s.state == "paused":
                raise CommandError("session_paused", f"session {s.id} is paused; resume it first")
            s.prompts += 1
            if s.state == "idle":
                self._wake(s, t, "prompted")
            return {"session": s.id, "state": s.state, "prompts": s.prompts}
        if action == "session.renice":
            previous, s.nice = s.nice, args.nice
            self._changed = True
            return {"session": s.id, "nice": s.nice, "previous": previous}
        raise CommandError("not_supported", f"{action} is not supported by the {self.name} source")

    def _wake(self, s: SimSession, t: float, reason: str) -> None:
        if s.state == "paused" and s.paused_from == "compacted":
            s.state_until = t
        if self.profile.idle_after_s is not None and s.role == "chat":
            s.idle_at = t + self._rng.uniform(*self.profile.awake_for_s)
        s.next_call = t
        self._set_state(s, "running", reason)
