"""Metrics-only nodes read from a Prometheus server that scrapes node_exporter.

A poller asks the Prometheus HTTP API (`/api/v1/query`) for each node_exporter instance's CPU, memory
and load, validates every value (Prometheus relays what exporters claim: untrusted), and returns typed
samples. A series that stopped is simply absent from an instant query (Prometheus' staleness), so a
node whose exporter went away gets no sample and goes offline through the fleet's ordinary liveness.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import httpx

from heady_agent.clock import Clock

from .fleet import Fleet, NodeMetrics

SOURCE = "prometheus"
# A label selector is the inside of `{...}`: label matchers only, so it cannot change the query.
_SELECTOR = re.compile(r'^\s*(?:[A-Za-z_][A-Za-z0-9_]*\s*(?:=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*,?\s*)*$')
_MAX_CORES = 65536


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
    ts: float
    cpu: float  # percent busy over all cores, 0..100
    mem: float  # percent used, 0..100
    mem_available: int  # bytes
    mem_total: int  # bytes
    load: tuple[float, float, float]
    cores: int
    received_at: float  # console clock: the node's liveness counts from here


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


class PrometheusPoller:
    """Reads one `[[prometheus]]` entry; `timeout_s` should stay below the console's refresh interval."""

    def __init__(self, source: PrometheusSource, clock: Clock, *, timeout_s: float, rate_window_s: int = 60,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.source = source
        self.clock = clock
        headers = {"Authorization": f"Bearer {source.token}"} if source.token else {}
        verify: str | bool = str(source.ca_file) if source.ca_file is not None else True
        self._client = httpx.AsyncClient(base_url=source.url.rstrip("/"), headers=headers, verify=verify,
                                         timeout=timeout_s, transport=transport)
        self._queries = _queries(source.selector, f"{rate_window_s}s")

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _vector(self, query: str) -> dict[str, tuple[float, float]]:
        """instance -> (timestamp, value) of an instant vector query."""
        try:
            resp = await self._client.get("/api/v1/query", params={"query": query})
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"prometheus {self.source.url}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise PrometheusError(f"prometheus {self.source.url}: query failed: {str(error)[:200]}")
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
            raise PrometheusError(f"prometheus {self.source.url}: answer is not an instant vector")
        out: dict[str, tuple[float, float]] = {}
        for series in data["result"]:
            try:
                instance = series["metric"]["instance"]
                ts, raw = series["value"]
                pair = (float(ts), float(raw))
            except (KeyError, TypeError, ValueError):
                continue  # one malformed series loses only itself
            if isinstance(instance, str) and 0 < len(instance) <= 256 and instance.isprintable():
                out[instance] = pair
        return out

    async def poll(self) -> list[NodeSample]:
        """One sample per instance that has every series and only valid values."""
        vectors = {name: await self._vector(q) for name, q in self._queries.items()}
        received_at = self.clock.now()
        samples = []
        for instance, (ts, cores_raw) in vectors["cores"].items():
            try:
                values = {name: vec[instance][1] for name, vec in vectors.items()}
            except KeyError:
                continue
            cores = _finite(cores_raw, 1, _MAX_CORES)
            idle = _finite(values["idle"], 0.0, 1.0 + 1e-6)
            total = _finite(values["total"], 1, 2.0**60)
            avail = _finite(values["available"], 0, 2.0**60)
            loads = [_finite(values[k], 0.0, 1e6) for k in ("load1", "load5", "load15")]
            if cores is None or idle is None or total is None or avail is None or None in loads \
                    or avail > total or not math.isfinite(ts):
                continue
            l1, l5, l15 = (float(v or 0.0) for v in loads)
            samples.append(NodeSample(
                instance=instance, ts=ts, cpu=round(100.0 * (1.0 - min(1.0, idle)), 2),
                mem=round(100.0 * (1.0 - avail / total), 2), mem_available=int(avail), mem_total=int(total),
                load=(l1, l5, l15), cores=int(cores), received_at=received_at))
        return samples


def apply_sample(fleet: Fleet, sample: NodeSample) -> None:
    """A Prometheus sample is a metrics-only node's frame: metrics, rings and liveness, like the link's."""
    state = fleet.node(sample.instance)
    state.source = SOURCE
    state.hostname = sample.instance
    state.cpu_count = sample.cores
    state.mem_total = sample.mem_total
    state.metrics = NodeMetrics(
        ts=sample.ts, cpu=sample.cpu, mem=sample.mem, swap=0.0, load=sample.load,
        mem_available=sample.mem_available, disk_read_bps=0.0, disk_write_bps=0.0,
        net_rx_bps=0.0, net_tx_bps=0.0, procs=0, queue_depth=0)
    state.cpu.push(sample.cpu)
    state.mem.push(sample.mem)
    state.load.push(sample.load[0] / sample.cores)
    state.queue.push(0.0)
    state.sample_ts.push(sample.ts)
    if state.link_status != "online":
        fleet.set_status(sample.instance, "online", sample.received_at)
    fleet.frames_arrived(sample.instance, sample.received_at)
