"""GET /metrics through prometheus_client, imported on the first scrape only (it costs about 2 MB of
RSS, and most agents are never scraped).

Every figure is read at scrape time from what the agent already holds: the last metrics sample, the
journal, the connections, the sources' sessions and the server's running Counts. No series is
labelled per session; label values are bounded sets (source names, token kinds, states, reasons).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from .protocol import SESSION_STATES

if TYPE_CHECKING:
    from .server import AgentServer


def exposition(server: AgentServer, accept: str) -> tuple[bytes, str]:
    """The scrape body and its content type, negotiated from the scraper's Accept header."""
    registry = CollectorRegistry()
    registry.register(_AgentCollector(server))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _labelled(family: GaugeMetricFamily | CounterMetricFamily, samples: Mapping[str, float]) -> Metric:
    for label, value in sorted(samples.items()):
        family.add_metric([label], value)
    return family


class _AgentCollector(Collector):
    def __init__(self, server: AgentServer) -> None:
        self.server = server

    def collect(self) -> Iterable[Metric]:
        yield from self._host()
        yield from self._agent()
        yield from self._llm()

    def _host(self) -> Iterable[Metric]:
        server = self.server
        m = server.last_metrics or server.collector.sample(server.sources)
        yield _gauge("heady_agent_cpu_percent", "Host CPU use, percent of all cores.", m["cpu"])
        load = GaugeMetricFamily("heady_agent_load", "Host load average.", labels=["period"])
        yield _labelled(load, dict(zip(("1m", "5m", "15m"), m["load"])))
        yield _gauge("heady_agent_memory_used_percent", "Host memory in use, percent.", m["mem"])
        yield _gauge("heady_agent_swap_used_percent", "Host swap in use, percent.", m["swap"])
        yield _gauge("heady_agent_memory_available_bytes", "Host memory available.", m["mem_available"])
        disk = GaugeMetricFamily("heady_agent_disk_bytes_per_second", "Host disk throughput.", labels=["direction"])
        yield _labelled(disk, {"read": m["disk_read_bps"], "write": m["disk_write_bps"]})
        net = GaugeMetricFamily("heady_agent_network_bytes_per_second", "Host network throughput.", labels=["direction"])
        yield _labelled(net, {"rx": m["net_rx_bps"], "tx": m["net_tx_bps"]})
        yield _gauge("heady_agent_processes", "Processes on the host.", m["procs"])
        yield _gauge("heady_agent_queue_depth", "Work items waiting in the agent's queues.", m["queue_depth"])

    def _agent(self) -> Iterable[Metric]:
        server = self.server
        journal = server.journal
        last = GaugeMetricFamily("heady_agent_journal_last_seq", "Last seq written to the journal.", labels=["journal"])
        yield _labelled(last, {journal.id: journal.committed_seq})
        first = GaugeMetricFamily("heady_agent_journal_first_seq", "Oldest seq still kept in the journal.", labels=["journal"])
        yield _labelled(first, {journal.id: journal.first_seq})
        yield _gauge("heady_agent_consoles_connected", "Open console connections.", server.connections)
        yield _gauge("heady_agent_send_queue_bytes", "Frames waiting to be sent, all connections.", server.send_queue_bytes)
        yield _gauge("heady_agent_simulated", "1 when any source is simulated.", int(server.simulated))
        counts = server.counts
        refused = CounterMetricFamily("heady_agent_connections_refused", "Connections refused, by reason.", labels=["reason"])
        yield _labelled(refused, counts.refused)
        yield CounterMetricFamily(
            "heady_agent_subscribers_dropped", "Subscribers closed for falling too far behind.",
            value=counts.subscribers_dropped,
        )  # fmt: skip
        yield CounterMetricFamily(
            "heady_agent_frames_refused", "Events not journalled because they exceeded the frame limit.",
            value=counts.frames_refused,
        )  # fmt: skip

    def _llm(self) -> Iterable[Metric]:
        server = self.server
        sessions = GaugeMetricFamily(
            "heady_agent_sessions", "Sessions the sources report now, by source and state.", labels=["source", "state"]
        )
        by_state: dict[tuple[str, str], int] = {}
        for key in server.session_states():
            by_state[key] = by_state.get(key, 0) + 1
        for label in sorted(server.source_labels()):
            for state in SESSION_STATES:
                sessions.add_metric([label, state], by_state.get((label, state), 0))
        yield sessions
        counts = server.counts
        calls = CounterMetricFamily(
            "heady_agent_llm_calls", "LLM calls reported since the agent started, by source.", labels=["source"]
        )
        yield _labelled(calls, counts.llm_calls)
        tokens = CounterMetricFamily(
            "heady_agent_llm_tokens", "LLM tokens reported since the agent started, by source and kind.",
            labels=["source", "kind"],
        )  # fmt: skip
        for (source, kind), value in sorted(counts.llm_tokens.items()):
            tokens.add_metric([source, kind], value)
        yield tokens
        cost = CounterMetricFamily(
            "heady_agent_llm_cost_usd", "Cost of LLM calls that carry one (provider-reported), by source.",
            labels=["source"],
        )  # fmt: skip
        yield _labelled(cost, counts.llm_cost_usd)
