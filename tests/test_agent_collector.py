"""Host sampling: fields, rates from counter deltas, replacement by simulated sources, top list."""

from __future__ import annotations

import os
from typing import Any

from heady_agent.clock import ManualClock
from heady_agent.collector import TOP_PROCESSES, Collector
from heady_agent.protocol import Metrics
from heady_agent.sources.base import SessionSource


class _QueueSource(SessionSource):
    name = "queue-test"

    def __init__(self, depth: int, host: dict[str, Any] | None = None, rows: list[dict] | None = None) -> None:
        super().__init__(ctx=None)  # type: ignore[arg-type]  # the collector never touches ctx
        self.depth, self.host, self.rows = depth, host, rows

    def queue_depth(self) -> int:
        return self.depth

    def host_metrics(self) -> dict[str, Any] | None:
        return self.host

    def process_rows(self) -> list[dict[str, Any]] | None:
        return self.rows


def test_sample_is_a_valid_metrics_frame_once_numbered() -> None:
    clock = ManualClock()
    collector = Collector(clock)
    clock.advance(1.0)
    frame = collector.sample([])
    metrics = Metrics.model_validate({**frame, "seq": 1})
    assert len(metrics.load) == 3
    assert metrics.procs > 0
    assert metrics.ts == clock.now()


def test_rates_are_never_negative_and_zero_without_elapsed_time() -> None:
    clock = ManualClock()
    collector = Collector(clock)
    frame = collector.sample([])  # no time has passed: no rate can be computed
    assert (frame["disk_read_bps"], frame["net_rx_bps"]) == (0.0, 0.0)
    clock.advance(1.0)
    frame = collector.sample([])
    assert min(frame["disk_read_bps"], frame["disk_write_bps"], frame["net_rx_bps"], frame["net_tx_bps"]) >= 0


def test_queue_depth_is_the_sum_over_sources() -> None:
    frame = Collector(ManualClock()).sample([_QueueSource(3), _QueueSource(4)])
    assert frame["queue_depth"] == 7


def test_a_simulated_source_replaces_host_fields() -> None:
    frame = Collector(ManualClock()).sample([_QueueSource(0, host={"cpu": 91.5, "load": [7.0, 6.0, 5.0]})])
    assert frame["cpu"] == 91.5
    assert frame["load"] == [7.0, 6.0, 5.0]


def test_top_processes_are_sorted_by_cpu_and_mark_known_sessions() -> None:
    import time

    collector = Collector(ManualClock())
    collector.top_processes([], {})
    busy_until = time.process_time() + 0.3
    while time.process_time() < busy_until:  # become one of the busiest processes for a moment
        pass
    rows = collector.top_processes([], {os.getpid(): "managed:me:1"})
    assert 0 < len(rows) <= TOP_PROCESSES
    assert [r["cpu"] for r in rows] == sorted((r["cpu"] for r in rows), reverse=True)
    mine = next(r for r in rows if r["pid"] == os.getpid())
    assert mine["session"] == "managed:me:1"


def test_a_simulated_source_replaces_the_process_list() -> None:
    rows = [{"pid": n, "name": f"sim{n}", "cpu": 1.0, "rss": 0} for n in range(20)]
    given = Collector(ManualClock()).top_processes([_QueueSource(0, rows=rows)], {})
    assert given == rows[:TOP_PROCESSES]
