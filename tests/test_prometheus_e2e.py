"""A real Prometheus scraping a real node_exporter on loopback: the console configured with
[[prometheus]] shows the node_exporter host as a metrics-only node with its CPU, memory and load."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from agentkit import free_port, wait_until

from heady_tui.config import Config, Paths
from heady_tui.operator import ConsoleOperator, OperatorError
from heady_tui.supervisor import Supervisor

PROMETHEUS = shutil.which("prometheus")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")

pytestmark = pytest.mark.skipif(PROMETHEUS is None or NODE_EXPORTER is None,
                                reason="needs the Debian packages prometheus and prometheus-node-exporter")


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@asynccontextmanager
async def prometheus_scraping_node_exporter(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """(Prometheus URL, node_exporter instance) with both running as child processes."""
    assert PROMETHEUS is not None and NODE_EXPORTER is not None
    exporter_port, prom_port = free_port(), free_port()
    instance = f"127.0.0.1:{exporter_port}"
    exporter = start([NODE_EXPORTER, f"--web.listen-address={instance}", "--collector.disable-defaults",
                      "--collector.cpu", "--collector.loadavg", "--collector.meminfo"], tmp_path / "exporter.log")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{instance}']\n")
    prom = start([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                  f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log")
    try:
        yield f"http://127.0.0.1:{prom_port}", instance
    finally:
        stop(prom)
        stop(exporter)


async def test_a_node_exporter_host_appears_with_cpu_memory_and_load_and_takes_no_commands(tmp_path: Path) -> None:
    async with prometheus_scraping_node_exporter(tmp_path) as (url, instance):
        config = Config.model_validate({"prometheus": [{"url": url, "selector": 'job="node"', "interval_s": 1.0}]})
        sup = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "data"))
        await sup.start()
        try:
            await wait_until(lambda: (n := sup.fleet.nodes.get(instance)) is not None and n.metrics is not None,
                             timeout=90, what="the node_exporter host in the fleet")
            node = sup.fleet.nodes[instance]
            assert node.metrics is not None
            assert (node.source, node.status) == ("prometheus", "online")
            assert 0.0 <= node.metrics.cpu <= 100.0 and 0.0 < node.metrics.mem < 100.0
            assert node.cpu_count >= 1 and node.utilisation is not None
            with pytest.raises(OperatorError, match="metrics-only node read from Prometheus"):
                await ConsoleOperator(sup).command(instance, "node.drain")
            assert (await sup.command(instance, "node.drain")).error == "metrics_only"
        finally:
            await sup.stop()
