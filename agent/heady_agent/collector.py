"""Host metrics from psutil, sampled without blocking: rates come from counter deltas."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import psutil

from .clock import Clock
from .sources.base import SessionSource

TOP_PROCESSES = 15


class Collector:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._last_mono: float | None = None
        self._last_disk: tuple[int, int] | None = None
        self._last_net: tuple[int, int] | None = None
        psutil.cpu_percent(interval=None)  # primes the counter; the first real sample is a delta
        self._counters()

    def _counters(self) -> tuple[float, tuple[int, int] | None, tuple[int, int] | None]:
        mono = self.clock.monotonic()
        disk = psutil.disk_io_counters()
        net = psutil.net_io_counters()
        disk_pair = (disk.read_bytes, disk.write_bytes) if disk else None
        net_pair = (net.bytes_recv, net.bytes_sent) if net else None
        return mono, disk_pair, net_pair

    @staticmethod
    def _rates(now: tuple[int, int] | None, before: tuple[int, int] | None, elapsed: float) -> tuple[float, float]:
        if now is None or before is None or elapsed <= 0:
            return 0.0, 0.0
        # Counters can wrap or reset (device removed): never report a negative rate.
        return max(0.0, (now[0] - before[0]) / elapsed), max(0.0, (now[1] - before[1]) / elapsed)

    def sample(self, sources: Sequence[SessionSource]) -> dict[str, Any]:
        """One metrics frame body (without seq/journal)."""
        mono, disk, net = self._counters()
        elapsed = mono - self._last_mono if self._last_mono is not None else 0.0
        disk_r, disk_w = self._rates(disk, self._last_disk, elapsed)
        net_rx, net_tx = self._rates(net, self._last_net, elapsed)
        self._last_mono, self._last_disk, self._last_net = mono, disk, net
        vm = psutil.virtual_memory()
        frame: dict[str, Any] = {
            "type": "metrics",
            "ts": self.clock.now(),
            "cpu": psutil.cpu_percent(interval=None),
            "load": [round(x, 2) for x in os.getloadavg()],
            "mem": vm.percent,
            "swap": psutil.swap_memory().percent,
            "mem_available": vm.available,
            "disk_read_bps": round(disk_r, 1),
            "disk_write_bps": round(disk_w, 1),
            "net_rx_bps": round(net_rx, 1),
            "net_tx_bps": round(net_tx, 1),
            "procs": len(psutil.pids()),
            "queue_depth": sum(s.queue_depth() for s in sources),
        }
        for source in sources:
            replaced = source.host_metrics()
            if replaced:
                frame.update(replaced)
        return frame

    def top_processes(self, sources: Sequence[SessionSource], session_by_pid: dict[int, str]) -> list[dict[str, Any]]:
        """The busiest processes by CPU since the previous call (detail frames)."""
        for source in sources:
            given = source.process_rows()
            if given is not None:
                return given[:TOP_PROCESSES]
        rows: list[dict[str, Any]] = []
        # process_iter reuses its Process objects, so cpu_percent is a delta since the last call.
        for proc in psutil.process_iter(["name", "username", "memory_info"]):
            try:
                cpu = proc.cpu_percent(interval=None)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            info = proc.info
            mem = info.get("memory_info")
            rows.append(
                {
                    "pid": proc.pid,
                    "name": info.get("name") or "?",
                    "user": info.get("username"),
                    "cpu": cpu,
                    "rss": mem.rss if mem else 0,
                    "session": session_by_pid.get(proc.pid),
                }
            )
        rows.sort(key=lambda r: r["cpu"], reverse=True)
        return rows[:TOP_PROCESSES]
