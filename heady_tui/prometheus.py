"""Metrics-only nodes read from a Prometheus server that scrapes node_exporter.

The poller asks the Prometheus HTTP API for range vectors (`/api/v1/query_range`) on a fixed grid of
`step_s` seconds on the console's clock. The first poll asks for the last `points` steps (the nodes
table's sparkline width, so a node's line is full at first sight); each later poll asks only for the
steps since the previous one, so nothing is counted twice and a failed poll's gap is refilled (up to
`points` steps). The seven queries of a poll run together under one deadline, kept below the polling
interval so a poll ends before the next is due.

Every value is validated (Prometheus relays what exporters claim: untrusted). Stale series: when a
target stops, Prometheus ends its series (a staleness marker), so its points stop. A node's newest
point is its last frame for the fleet's one liveness rule: with no newer point for the node's timeout
it is offline and stale, exactly like an agent node gone silent.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from heady_agent.clock import Clock

from .fleet import Fleet, NodeMetrics

SOURCE = "prometheus"
# A label selector is the inside of `{...}`: label matchers only, so it cannot change the query.
_SELECTOR = re.compile(r'^\s*(?:[A-Za-z_][A-Za-z0-9_]*\s*(?:=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*,?\s*)*$')
_MAX_CORES = 65536
_MAX_INSTANCE_CHARS = 256
# One answer is at most this big: a 5,000-node fleet's backfill is a few MB per query.
MAX_ANSWER_BYTES = 64 * 2**20


class PrometheusError(Exception):
    """The server could not be read or answered something that is not the Prometheus API format."""


@dataclass(frozen=True)
class PrometheusSource:
    url: str
    selector: str = ""
    token: str | None = None
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if not _SELECTOR.match(self.selector):
            raise ValueError(f"prometheus selector {self.selector!r} is not a list of label matchers")


@dataclass(frozen=True)
class NodeSample:
    instance: str
    ts: float  # the grid step it was evaluated at, on the console's clock: the node's liveness counts from here
    cpu: float  # percent busy over all cores, 0..100
    mem: float  # percent used, 0..100
    mem_available: int  # bytes
    mem_total: int  # bytes
    load: tuple[float, float, float]
    cores: int


def _queries(selector: str, rate_window: str) -> dict[str, str]:
    sel = selector.strip().rstrip(",")
    base = f"{{{sel}}}" if sel else ""
    idle = f'{{{sel + "," if sel else ""}mode="idle"}}'
    return {
        "cores": f"count by (instance) (node_cpu_seconds_total{idle})",
        "idle": f"avg by (instance) (rate(node_cpu_seconds_total{idle}[{rate_window}]))",
        "load1": f"node_load1{base}",
        "load5": f"node_load5{base}",
        "load15": f"node_load15{base}",
        "available": f"node_memory_MemAvailable_bytes{base}",
        "total": f"node_memory_MemTotal_bytes{base}",
    }


def _finite(value: float, low: float, high: float) -> float | None:
    return value if math.isfinite(value) and low <= value <= high else None


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verified TLS: the system CAs plus the entry's own CA bundle. ValueError when it cannot be read."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load ca_file {ca_file}: {exc}") from None
    return context


def _sample(instance: str, ts: float, values: Mapping[str, float]) -> NodeSample | None:
    """A node's sample at one step, or None when a value is out of range."""
    cores = _finite(values["cores"], 1, _MAX_CORES)
    idle = _finite(values["idle"], 0.0, 1.0 + 1e-6)
    total = _finite(values["total"], 1, 2.0**60)
    avail = _finite(values["available"], 0, 2.0**60)
    loads = [_finite(values[k], 0.0, 1e6) for k in ("load1", "load5", "load15")]
    if cores is None or idle is None or total is None or avail is None or None in loads or avail > total:
        return None
    l1, l5, l15 = (float(v or 0.0) for v in loads)
    return NodeSample(
        instance=instance, ts=ts, cpu=round(100.0 * (1.0 - min(1.0, idle)), 2),
        mem=round(100.0 * (1.0 - avail / total), 2), mem_available=int(avail), mem_total=int(total),
        load=(l1, l5, l15), cores=int(cores))


class PrometheusPoller:
    """Reads one `[[prometheus]]` entry: `points` steps of `step_s` seconds at first, then the new ones.

    `timeout_s` bounds a whole poll (every query of it) and should stay below the polling interval.
    """

    def __init__(self, source: PrometheusSource, clock: Clock, *, step_s: float, points: int, timeout_s: float,
                 rate_window_s: int = 60, max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        if step_s <= 0 or points < 1 or timeout_s <= 0:
            raise ValueError("step_s and timeout_s must be positive and points at least 1")
        self.source = source
        self.clock = clock
        self.step_s = step_s
        self.points = points
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes
        headers = {"Authorization": f"Bearer {source.token}"} if source.token else {}
        self._client = httpx.AsyncClient(base_url=source.url.rstrip("/"), headers=headers, verify=tls_context(source.ca_file),
                                         timeout=timeout_s)
        self._queries = _queries(source.selector, f"{rate_window_s}s")
        self._next_step: float | None = None  # the first grid step the next poll asks for

    async def aclose(self) -> None:
        await self._client.aclose()

    def until_next_step(self) -> float:
        """Seconds until the next grid step: polling just after each step keeps the newest point fresh."""
        return self.step_s - self.clock.now() % self.step_s

    def _fail(self, what: str) -> PrometheusError:
        return PrometheusError(f"prometheus {self.source.url}: {what}")

    async def _get(self, path: str, params: Mapping[str, str]) -> object:
        """The decoded JSON answer, read up to max_answer_bytes."""
        try:
            async with self._client.stream("GET", path, params=params) as resp:
                chunks, size = [], 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_answer_bytes:
                        raise self._fail(f"answer larger than {self.max_answer_bytes} bytes")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise self._fail(f"{type(exc).__name__}: {exc}") from exc
        try:
            return json.loads(b"".join(chunks))
        except ValueError:
            # The API answers its errors in JSON too: anything else is a proxy, a login page, a wrong URL.
            raise self._fail(f"HTTP {resp.status_code}, answer is not the Prometheus API's JSON") from None

    async def _matrix(self, query: str, start: float, end: float) -> dict[str, dict[float, float]]:
        """instance -> {step timestamp: value} of a range query; points off the asked grid are dropped."""
        body = await self._get("/api/v1/query_range", {
            "query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{self.step_s:g}"})
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise self._fail(f"query failed: {str(error)[:200]}")
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise self._fail("answer is not a range vector")
        out: dict[str, dict[float, float]] = {}
        for series in data["result"]:
            try:
                instance = series["metric"]["instance"]
                points = {float(ts): float(raw) for ts, raw in series["values"]}
            except (KeyError, TypeError, ValueError):
                continue  # one malformed series loses only itself
            if not (isinstance(instance, str) and 0 < len(instance) <= _MAX_INSTANCE_CHARS and instance.isprintable()):
                continue
            out[instance] = {ts: v for ts, v in points.items() if start <= ts <= end and self._on_grid(ts, start)}
        return out

    def _on_grid(self, ts: float, start: float) -> bool:
        steps = (ts - start) / self.step_s
        return abs(steps - round(steps)) < 1e-6

    async def poll(self) -> list[NodeSample]:
        """The samples of the steps not yet read, oldest first: one per instance and step that has
        every series with valid values. Raises PrometheusError; the same steps are asked again then."""
        end = math.floor(self.clock.now() / self.step_s) * self.step_s
        start = end - (self.points - 1) * self.step_s
        if self._next_step is not None:
            start = max(start, self._next_step)
        if start > end:
            return []
        try:
            async with asyncio.timeout(self.timeout_s):
                async with asyncio.TaskGroup() as group:
                    tasks = {name: group.create_task(self._matrix(q, start, end)) for name, q in self._queries.items()}
        except TimeoutError:
            raise self._fail(f"no answer within {self.timeout_s:g} s") from None
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        self._next_step = end + self.step_s
        matrices = {name: task.result() for name, task in tasks.items()}
        samples = []
        for instance, cores in matrices["cores"].items():
            for ts in cores:
                try:
                    values = {name: matrix[instance][ts] for name, matrix in matrices.items()}
                except KeyError:
                    continue
                sample = _sample(instance, ts, values)
                if sample is not None:
                    samples.append(sample)
        samples.sort(key=lambda s: s.ts)
        return samples


def apply_sample(fleet: Fleet, sample: NodeSample, step_s: float) -> None:
    """A Prometheus sample is a metrics-only node's frame: metrics, rings and liveness, like the link's."""
    state = fleet.node(sample.instance)
    state.source = SOURCE
    state.hostname = sample.instance
    state.cpu_count = sample.cores
    state.mem_total = sample.mem_total
    state.sample_interval_s = step_s
    state.metrics = NodeMetrics(
        ts=sample.ts, cpu=sample.cpu, mem=sample.mem, swap=0.0, load=sample.load,
        mem_available=sample.mem_available, disk_read_bps=0.0, disk_write_bps=0.0,
        net_rx_bps=0.0, net_tx_bps=0.0, procs=0, queue_depth=0)
    state.cpu.push(sample.cpu)
    state.mem.push(sample.mem)
    state.load.push(sample.load[0] / sample.cores)
    state.queue.push(0.0)
    state.sample_ts.push(sample.ts)
    # Prometheus answering with the node's series is its link being up; its freshness is the step.
    if state.link_status != "online":
        fleet.set_status(sample.instance, "online", sample.ts)
    fleet.frames_arrived(sample.instance, sample.ts)
