"""Wires the console together: links -> store -> ack -> fleet -> brain, events out, commands in.

The same Supervisor runs under the Textual app, headless (`heady run --headless`) and in tests.
Every frame is committed to the store before the agent is acked and before the fleet or the brain
see it, so what the console shows and decides on is always what it has kept.
"""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from heady_agent.aio import cancel_and_wait
from heady_agent.clock import Clock, SystemClock
from heady_agent.protocol import ACTIONS, Detail, Event, Hello, Metrics, Result, Sessions

from .alerts import AlertDispatcher
from .brain import Brain
from .config import Config, ConfigError, NodeConfig, Paths, PrometheusConfig
from .engine.cost import PricingTable
from .events import HeadyEvent
from .fleet import SPARKLINE_WIDTH, SPARKLINE_WINDOW_S, UNKNOWN_STATE, Fleet, SessionRecord
from .ledger import PricedCall, PriorityRules, TestRun
from .link import NodeLink, security_warnings
from .prometheus import SOURCE as PROMETHEUS_SOURCE
from .prometheus import PrometheusError, PrometheusPoller, PrometheusSource, apply_sample, tls_context
from .store import Store, StoreError, StoredEvent
from .waits import WaitAlarm

log = logging.getLogger("heady.supervisor")

Subscriber = Callable[[HeadyEvent], None]

STATS_INTERVAL_S = 10.0
PRUNE_INTERVAL_S = 3600.0
WARM_SESSIONS_S = 86400.0  # on start the fleet shows live sessions and those active in the last day
LIVENESS_CHECKS_PER_TIMEOUT = 4
PROMETHEUS_TIMEOUT_POLLS = 3  # a metrics-only node without a new sample for this many polls is offline
PROMETHEUS_POLL_DEADLINE = 0.8  # a poll's share of the polling interval


class Launcher(Protocol):
    """Starts agents for the console (embedded or demo) and says how to reach them."""

    async def start(self) -> list[NodeConfig]: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class SessionTimeline:
    """A session's newest stored events, the stored prices of the calls and the verdicts of the test
    runs among them."""

    events: list[StoredEvent]
    calls: list[PricedCall]
    test_runs: list[TestRun] = field(default_factory=list)


@dataclass
class IngestCounts:
    stored: int = 0
    duplicates: int = 0


def prometheus_source(entry: PrometheusConfig) -> PrometheusSource:
    try:
        source = PrometheusSource(url=entry.url, selector=entry.selector, token=entry.resolve_token(),
                                  ca_file=Path(entry.ca_file).expanduser() if entry.ca_file else None)
        tls_context(source.ca_file)  # an unreadable CA bundle stops the start, not the poller later
        return source
    except ValueError as exc:
        raise ConfigError(f"prometheus {entry.url}: {exc}") from None


class Supervisor:
    def __init__(
        self,
        config: Config,
        paths: Paths,
        *,
        clock: Clock | None = None,
        simulated: bool = False,
        launcher: Launcher | None = None,
        link_options: dict[str, Any] | None = None,
        stats_interval_s: float = STATS_INTERVAL_S,
    ) -> None:
        self.config = config
        self.paths = paths
        self.clock = clock or SystemClock()
        self.simulated = simulated
        self.launcher = launcher
        self.fleet = Fleet(max_sessions_per_node=config.store.max_sessions_per_node)
        # One set of rules for the store's ledger and a store-less fleet; fed each node's labels from its hello.
        self.priority = self.fleet.priority = PriorityRules(config.priority.rules)
        self.store: Store | None = None
        self.links: dict[str, NodeLink] = {}
        self.nodes: list[NodeConfig] = []
        self.brain: Brain | None = None
        self.alerts: AlertDispatcher | None = None  # only when [[alerts.webhooks]] are configured
        self.details: dict[str, Detail] = {}
        self.started = False
        self._link_options = link_options or {}
        self._stats_interval_s = stats_interval_s
        self._subscribers: list[Subscriber] = []
        self._watchers: list[Callable[[], None]] = []
        self._applied: dict[tuple[str, str], int] = {}  # (node, journal) -> highest seq the fleet has seen
        self._hellos: dict[str, Hello] = {}
        self._counts: dict[str, IngestCounts] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._wait_alarm = WaitAlarm(config.alerts.waiting_after_s)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, start the brain and one link per node. StoreError/ConfigError propagate."""
        if self.started:
            return
        pricing = PricingTable.load(self.config.cost)
        self.fleet.pricing = pricing
        self.store = await Store.open(self.paths.database, metric_rollup_s=self.config.store.metric_rollup_s, pricing=pricing,
                                      priority=self.priority)
        try:
            self.nodes = list(self.config.nodes)
            if self.launcher is not None:
                self.nodes += await self.launcher.start()
            # Tokens are read and selectors checked now, so a bad entry stops the start with its error.
            prometheus = [(entry, prometheus_source(entry)) for entry in self.config.prometheus]
            now = self.clock.now()
            for node in self.nodes:
                self.fleet.track(node.name, now, self.node_timeout_s(node))
            if self.config.alerts.webhooks:
                self.alerts = AlertDispatcher(
                    self.config.alerts, self.clock, simulated=lambda: self.simulated,
                    publish=self._republish,
                )  # fmt: skip
                await self.alerts.start()
                self.subscribe(self.alerts.handle)
            # The fleet first: the brain starts from it (sessions with their projects, nodes).
            await self._warm_fleet()
            self.brain = Brain(self)
            await self.brain.start()
            for node in self.nodes:
                for warning in security_warnings(node):
                    log.warning("node %s: %s", node.name, warning)
                    self.publish("security.warning", node=node.name, message=warning)
                link = NodeLink(node, self, clock=self.clock, **self._link_options)
                self.links[node.name] = link
                link.start()
        except BaseException:
            await self._shutdown()
            raise
        self._tasks = [
            asyncio.create_task(self._tick_loop(), name="supervisor:tick"),
            asyncio.create_task(self._stats_loop(), name="supervisor:stats"),
            asyncio.create_task(self._prune_loop(), name="supervisor:prune"),
            asyncio.create_task(self._liveness_loop(), name="supervisor:liveness"),
        ] + [
            asyncio.create_task(self._prometheus_loop(entry, source), name=f"supervisor:prometheus:{entry.url}")
            for entry, source in prometheus
        ]
        self.started = True

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        await self._shutdown()

    async def _shutdown(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        # The brain stops while the links are still up: stopping a rebalance run reverts its changes
        # through agent commands.
        if self.brain is not None:
            try:
                await self.brain.stop()
            except Exception:
                log.exception("the brain failed to stop cleanly")
        await asyncio.gather(*(link.stop() for link in self.links.values()))
        for task in list(self._background):
            task.cancel()
        if self.alerts is not None:
            await self.alerts.stop()
        self._publish_stats()
        if self.store is not None:
            await self.store.close()
        if self.launcher is not None:
            await self.launcher.stop()

    async def _warm_fleet(self) -> None:
        """Rebuild nodes, sessions (from the session ledger) and recent metric rings from the store,
        so a restart shows history."""
        assert self.store is not None
        now = self.clock.now()
        known = {node.name for node in self.nodes}
        for row in await self.store.nodes():
            if row["id"] not in known:
                continue
            state = self.fleet.node(row["id"])
            info = row["info"]
            state.hostname = row["hostname"]
            state.agent_id = info.get("id", "")
            state.agent_version = info.get("agent_version", "")
            state.os = info.get("os", "")
            state.cpu_count = max(1, int(info.get("cpu_count", 1)))
            state.mem_total = int(info.get("mem_total", 0))
            state.labels = dict(info.get("labels", {}))
            state.simulated = row["simulated"]
        for node, (journal, seq) in (await self.store.cursors()).items():
            if node in known:
                self._applied[(node, journal)] = seq
                state = self.fleet.node(node)
                state.journal, state.last_seq = journal, seq
        self.fleet.apply_ledger(s for s in await self.store.sessions(active_since=now - WARM_SESSIONS_S, or_live=True) if s.node in known)
        for node in known:
            for row in await self.store.metrics(node, now - 600):
                state = self.fleet.node(node)
                state.cpu.push(row["cpu"])
                state.mem.push(row["mem"])
                state.load.push(row["load1"] / max(1, state.cpu_count))
                state.queue.push(float(row["queue_depth"]))
                state.sample_ts.push(row["ts"])
        for (node, journal), seq in self._applied.items():
            state = self.fleet.node(node)
            state.journal, state.last_seq = journal, seq

    async def _tick_loop(self) -> None:
        interval = self.config.detector.evaluation_interval_s
        while True:
            await asyncio.sleep(interval)
            if self.brain is not None:
                try:
                    await self.brain.tick()
                except Exception:
                    log.exception("brain tick failed")
                self.changed()

    def node_timeout_s(self, node: NodeConfig) -> float:
        """Seconds without frames after which the node is offline: its own, else the console's default."""
        return node.timeout_s if node.timeout_s is not None else self.config.liveness.timeout_s

    def check_liveness(self) -> None:
        """Mark nodes silent for their timeout offline (their sessions unknown), on the injected clock."""
        now = self.clock.now()
        version = self.fleet.version
        for state in self.fleet.update_liveness(now):
            unknown = sum(1 for rec in self.fleet.node_sessions(state.id) if rec.state == UNKNOWN_STATE)
            if self.store is not None:  # the ledger says so too, so every reader (CLI, report) agrees
                task = asyncio.get_running_loop().create_task(self._record_unknown(state.id, now))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            self.publish("node.silent", node=state.id, last_frame_at=state.last_frame_at, timeout_s=state.timeout_s,
                         sessions_unknown=unknown)  # fmt: skip
        if self.fleet.version != version:
            self.changed()

    async def _record_unknown(self, node: str, now: float) -> None:
        assert self.store is not None
        try:
            await self.store.sessions_unknown(node, now)
        except StoreError as exc:
            log.error("could not mark the sessions of %s unknown: %s", node, exc)

    def check_waits(self) -> None:
        """Publish `session.waiting` once per wait that has lasted alerts.waiting_after_s, on the injected clock."""
        now = self.clock.now()
        for rec in self._wait_alarm.due(self.fleet, now):
            self.publish("session.waiting", node=rec.node, session=rec.id, project=rec.project or rec.title or "",
                         reason=rec.state_reason or "", since=rec.state_since, waited_s=round(now - rec.state_since, 1))  # fmt: skip

    async def _liveness_loop(self) -> None:
        timeouts = [self.node_timeout_s(node) for node in self.nodes] or [self.config.liveness.timeout_s]
        # A few checks per timeout, so a silent node is marked within a fraction of it past the timeout.
        interval = min(timeouts) / LIVENESS_CHECKS_PER_TIMEOUT
        while True:
            await asyncio.sleep(interval)
            try:
                self.check_liveness()
                self.check_waits()
            except Exception:
                log.exception("liveness check failed")

    async def _prometheus_loop(self, entry: PrometheusConfig, source: PrometheusSource) -> None:
        """Polls one [[prometheus]] entry: each instance is a metrics-only node with the fleet's liveness."""
        timeout_s = entry.timeout_s if entry.timeout_s is not None else PROMETHEUS_TIMEOUT_POLLS * entry.interval_s
        # One step per poll, at first the steps the sparklines span; each poll ends before the next is due.
        points = max(SPARKLINE_WIDTH, math.ceil(SPARKLINE_WINDOW_S / entry.interval_s))
        poller = PrometheusPoller(source, self.clock, step_s=entry.interval_s, points=points,
                                  timeout_s=entry.interval_s * PROMETHEUS_POLL_DEADLINE)
        try:
            while True:
                try:
                    samples = await poller.poll()
                except PrometheusError as exc:
                    log.warning("%s", exc)
                    samples = []
                for sample in samples:
                    node = self.fleet.nodes.get(sample.instance)
                    if node is None:
                        self.fleet.track(sample.instance, self.clock.now(), timeout_s)
                    elif node.source != PROMETHEUS_SOURCE:
                        continue  # an agent node of that name: its own frames describe it
                    apply_sample(self.fleet, sample, entry.interval_s)
                # A backfilled node whose series already stopped is offline at once, not after a timeout.
                self.check_liveness()
                await asyncio.sleep(poller.until_next_step())
        finally:
            await poller.aclose()

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self._stats_interval_s)
            self._publish_stats()

    async def _prune_loop(self) -> None:
        while True:
            if self.store is not None:
                try:
                    deleted = await self.store.prune(self.clock.now(), self.config.store.retention_days)
                    if deleted:
                        log.info("retention: deleted %d rows older than %g days", deleted, self.config.store.retention_days)
                except Exception:
                    log.exception("retention pass failed")
            await asyncio.sleep(PRUNE_INTERVAL_S)

    def _publish_stats(self) -> None:
        counts, self._counts = self._counts, {}
        for node, c in sorted(counts.items()):
            if c.stored or c.duplicates:
                self.publish("ingest.stats", node=node, stored=c.stored, duplicates=c.duplicates)

    # --- events out ---------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, name: str, **details: object) -> HeadyEvent:
        event = HeadyEvent(name, self.clock.now(), details)
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed on %s", name)
        return event

    def _republish(self, event: HeadyEvent) -> None:
        """Publish an event another part made (the alert dispatcher's alert.sent)."""
        self.publish(event.name, **event.details)

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """`callback()` runs after anything the fleet or the brain shows may have changed (frames,
        statuses, sessions, a brain tick), so a UI can repaint on change instead of polling."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    def changed(self) -> None:
        for callback in list(self._watchers):
            try:
                callback()
            except Exception:  # a watcher's bug must not stop ingest (frames are already stored)
                log.exception("fleet watcher failed")

    # --- commands in --------------------------------------------------------------------

    async def command(
        self, node: str, action: str, target: str | None = None, args: Mapping[str, object] | None = None,
        *, timeout: float | None = None,
    ) -> Result:  # fmt: skip
        link = self.links.get(node)
        state = self.fleet.nodes.get(node)
        if link is None and state is not None and state.source == PROMETHEUS_SOURCE:
            return Result(id="-", ok=False, error="metrics_only",
                          detail={"message": f"{node} is a metrics-only node read from Prometheus; it takes no commands"})
        if link is None:
            return Result(id="-", ok=False, error="unknown_node", detail={"message": f"no node named {node!r}"})
        if action not in ACTIONS:
            return Result(id="-", ok=False, error="unknown_action", detail={"message": f"unknown action {action!r}"})
        return await link.send_command(action, target, dict(args) if args is not None else None, timeout)

    async def set_priority(self, node: str, session_id: str, priority: str) -> SessionRecord | None:
        """An operator's priority class for a session, stored over the rules' (None: no such session)."""
        assert self.store is not None
        rec = await self.store.set_priority(node, session_id, priority)
        if rec is not None:
            self.fleet.apply_ledger([rec])
            self.changed()
        return rec

    async def reconnect(self, node: str) -> None:
        """Drop a node's link that is not online and dial again at once (no backoff wait)."""
        link = self.links.get(node)
        if link is not None and link.status != "online":
            link.backoff.reset()
            await link.stop()
            link.start()

    async def session_timeline(self, node: str, session: str, newest: int) -> SessionTimeline | None:
        """The session's `newest` stored events, oldest first, with their calls' prices; None while
        the store is not open (the console is starting)."""
        if self.store is None:
            return None
        events = (await self.store.events(node=node, session=session))[-newest:]
        shown = {(event.journal, event.seq) for event in events}
        calls = [call for call in await self.store.priced_calls(node=node, session=session) if (call.journal, call.seq) in shown]
        runs = [run for run in await self.store.test_runs(node=node, session=session) if (run.journal, run.seq) in shown]
        return SessionTimeline(events, calls, runs)

    def insecure_links(self) -> list[str]:
        """Nodes whose link is not verified TLS (the header warns about them)."""
        return [node.name for node in self.nodes if security_warnings(node)]

    def focus(self, node: str, on: bool) -> None:
        link = self.links.get(node)
        if link is None:
            return
        task = asyncio.get_running_loop().create_task(link.focus(on))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if not on:
            self.details.pop(node, None)

    # --- the link sink ------------------------------------------------------------------

    async def link_cursor(self, node: str) -> tuple[str, int] | None:
        assert self.store is not None
        return await self.store.cursor(node)

    async def link_hello(self, node: str, hello: Hello, previous_journal: str | None) -> None:
        assert self.store is not None
        self._hellos[node] = hello
        self.priority.set_labels(node, hello.node.labels)
        self.fleet.apply_hello(node, hello)
        if hello.simulated:
            self.simulated = True
        await self.store.record_node(
            node,
            hostname=hello.node.hostname,
            info=hello.node.model_dump(),
            simulated=hello.simulated,
            now=self.clock.now(),
        )
        if previous_journal is not None and previous_journal != hello.journal.id:
            self.fleet.node(node).journal_reset = True
            self.publish("node.journal_reset", node=node, old_journal=previous_journal, new_journal=hello.journal.id)

    async def link_frames(self, node: str, journal: str, frames: list[Metrics | Event]) -> int:
        assert self.store is not None
        result = await self.store.ingest(node, journal, frames)
        self.fleet.frames_arrived(node, self.clock.now())
        counts = self._counts.setdefault(node, IngestCounts())
        counts.stored += result.stored
        counts.duplicates += result.duplicates
        refused_before = self.fleet.node(node).sessions_refused
        if result.sessions or result.bad_events:
            self.fleet.apply_ledger(result.sessions, bad_events={node: result.bad_events} if result.bad_events else None)
        if self.brain is not None:
            try:
                self.brain.on_calls(result.calls)
                self.brain.on_test_runs(result.test_runs)
            except Exception:
                log.exception("the brain failed on calls from %s", node)
        key = (node, journal)
        applied = self._applied.get(key, 0)
        fresh = [f for f in frames if f.seq > applied]
        if fresh:
            self._applied[key] = max(f.seq for f in fresh)
            brain = self.brain
            for frame in fresh:
                # The frame is stored; a failure to show or judge it is logged, never a reason to refetch it.
                try:
                    self.fleet.apply_node_frame(node, frame)
                except Exception:
                    log.exception("the fleet could not apply a frame from %s (seq %d)", node, frame.seq)
                if brain is not None:
                    try:
                        brain.on_frame(node, frame)
                    except Exception:
                        log.exception("the brain failed on a frame from %s (seq %d)", node, frame.seq)
            self.changed()
        await self._notice_session_bound(node, refused_before)
        return result.top

    async def link_sessions(self, node: str, sessions: Sessions) -> None:
        self.fleet.frames_arrived(node, self.clock.now())
        assert self.store is not None
        refused_before = self.fleet.node(node).sessions_refused
        self.fleet.apply_ledger(await self.store.apply_sessions(node, sessions.sessions, self.clock.now()))
        await self._notice_session_bound(node, refused_before)
        self.changed()

    async def _notice_session_bound(self, node: str, refused_before: int) -> None:
        """One recorded notice per node and run when it first passes its session bound; the count of
        refused sessions goes on in the node's state."""
        if self.fleet.node(node).sessions_refused and not refused_before:
            message = f"more than {self.fleet.max_sessions_per_node} live sessions; the rest are not tracked (store.max_sessions_per_node)"
            log.warning("node %s: %s", node, message)
            await self.link_error(node, "sessions_bound", message)

    def link_detail(self, node: str, detail: Detail) -> None:
        self.details[node] = detail
        self.fleet.version += 1
        self.changed()

    def link_status(self, node: str, status: str, error: str | None) -> None:
        previous = self.fleet.node(node).link_status
        self.fleet.set_status(node, status, self.clock.now(), error)
        if status == "online":
            hello = self._hellos.get(node)
            self.publish(
                "node.online",
                node=node,
                hostname=hello.node.hostname if hello else "",
                journal=hello.journal.id if hello else None,
                last_seq=hello.journal.last_seq if hello else 0,
            )
        elif previous in ("online", "connecting"):
            self.publish("node.offline", node=node, reason=error or status)
        if self.brain is not None:
            try:
                self.brain.on_node_status(node, status)
            except Exception:
                log.exception("brain failed on the status of %s", node)
        self.changed()

    async def link_error(self, node: str, code: str, message: str) -> None:
        self.fleet.node(node).last_error = message
        self.fleet.version += 1
        self.changed()
        if self.store is not None:
            await self.store.record_ingest_error(node, code, message, self.clock.now())
