"""A real Prometheus scraping two real agents' /metrics and a real node_exporter on loopback: the
console (real Supervisor and HeadyApp via App.run_test) configured with [[prometheus]] shows the
node_exporter host beside the agent nodes, with its metrics, and takes it offline when its series stop."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentkit import AgentProcess, free_port
from uikit import FAST_DETECTOR, wait_until

from heady_tui.config import Config, Paths
from heady_tui.operator import ConsoleOperator, OperatorError
from heady_tui.supervisor import Supervisor
from heady_tui.ui.application import HeadyApp
from heady_tui.ui.widgets.table import KeyedTable

PROMETHEUS = shutil.which("prometheus")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
AGENTS = ("agent0", "agent1")
TOKEN = "t0k"

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


@dataclass
class Scraped:
    prometheus: str  # its URL
    instance: str  # node_exporter's instance label
    exporter: subprocess.Popen[bytes]
    agents: list[AgentProcess]


def scrape_config(exporter: str, agents: list[AgentProcess], token_file: Path) -> str:
    targets = ", ".join(f"'127.0.0.1:{a.port}'" for a in agents)
    return (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
        f"  - job_name: node\n    static_configs:\n      - targets: ['{exporter}']\n"
        f"  - job_name: heady-agent\n    authorization:\n      type: Bearer\n      credentials_file: {token_file}\n"
        f"    static_configs:\n      - targets: [{targets}]\n")


@asynccontextmanager
async def prometheus_scraping(tmp_path: Path) -> AsyncIterator[Scraped]:
    """Two agents, a node_exporter and a Prometheus scraping all three, as child processes."""
    assert PROMETHEUS is not None and NODE_EXPORTER is not None
    async with AsyncExitStack() as stack:
        agents = [await stack.enter_async_context(AgentProcess(tmp_path, name, token=TOKEN, node_index=i, node_count=2))
                  for i, name in enumerate(AGENTS)]
        exporter_port, prom_port = free_port(), free_port()
        instance = f"127.0.0.1:{exporter_port}"
        exporter = start([NODE_EXPORTER, f"--web.listen-address={instance}", "--collector.disable-defaults",
                          "--collector.cpu", "--collector.loadavg", "--collector.meminfo"], tmp_path / "exporter.log")
        stack.callback(stop, exporter)
        token_file = tmp_path / "agent.token"
        token_file.write_text(TOKEN)
        config = tmp_path / "prometheus.yml"
        config.write_text(scrape_config(instance, agents, token_file))
        prom = start([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                      f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log")
        stack.callback(stop, prom)
        yield Scraped(f"http://127.0.0.1:{prom_port}", instance, exporter, agents)


async def targets_up(url: str) -> dict[str, float]:
    """job/instance -> `up` as Prometheus reports it ({} until it answers)."""
    try:
        async with httpx.AsyncClient() as client:
            body = (await client.get(f"{url}/api/v1/query", params={"query": "up"})).json()
    except httpx.HTTPError:
        return {}
    return {f"{r['metric']['job']}/{r['metric']['instance']}": float(r["value"][1]) for r in body["data"]["result"]}


async def every_target_up(scraped: Scraped, timeout_s: float = 60.0) -> dict[str, float]:
    """Ask Prometheus (it scrapes every second) until all three targets read up; the last answer."""
    wanted = {f"heady-agent/127.0.0.1:{a.port}" for a in scraped.agents} | {f"node/{scraped.instance}"}
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        up = await targets_up(scraped.prometheus)
        if (set(up) == wanted and set(up.values()) == {1.0}) or asyncio.get_running_loop().time() > deadline:
            return up
        await asyncio.sleep(1.0)


def console_config(scraped: Scraped) -> Config:
    return Config.model_validate({
        "nodes": [{"name": a.name, "url": a.url, "token": TOKEN} for a in scraped.agents],
        "prometheus": [{"url": scraped.prometheus, "selector": 'job="node"', "interval_s": 1.0}],
        "detector": FAST_DETECTOR, "ui": {"refresh_hz": 20}})


@asynccontextmanager
async def console(tmp_path: Path, scraped: Scraped) -> AsyncIterator[tuple[HeadyApp, Any]]:
    config = console_config(scraped)
    app = HeadyApp(Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "console")), config)
    async with app.run_test(size=(160, 40)) as pilot:
        yield app, pilot


def shown(app: HeadyApp, node: str) -> dict[str, str]:
    table = app.screen.query_one("#nodes", KeyedTable)
    if node not in table.ids():
        return {}
    return {column: str(table.cell(node, column)) for column in ("status", "cpu", "mem", "load")}


def online_with_metrics(app: HeadyApp, node: str) -> dict[str, str]:
    row = shown(app, node)
    return row if row.get("status", "").startswith("online") and row["cpu"] != "-" else {}


async def test_the_node_exporter_host_shows_beside_the_scraped_agents_with_its_metrics(tmp_path: Path) -> None:
    async with prometheus_scraping(tmp_path) as scraped, console(tmp_path, scraped) as (app, pilot):
        row = await wait_until(pilot, lambda: online_with_metrics(app, scraped.instance),
                               "the node_exporter host online in the nodes table", timeout=90)
        assert row["mem"].endswith("%") and row["load"] != "-"
        await wait_until(pilot, lambda: all(online_with_metrics(app, name) for name in AGENTS), "both agents online")
        # The selector reads node_exporter's job only: the agents appear once, as agent nodes.
        assert set(app.screen.query_one("#nodes", KeyedTable).ids()) == {*AGENTS, scraped.instance}
        up = await every_target_up(scraped)
        assert len(up) == 3 and set(up.values()) == {1.0}, f"Prometheus did not scrape every target: {up}"
        assert app.supervisor.fleet.nodes[scraped.instance].source == "prometheus"
        with pytest.raises(OperatorError, match="metrics-only node read from Prometheus"):
            await ConsoleOperator(app.supervisor).command(scraped.instance, "node.drain")


async def test_the_node_exporter_host_goes_offline_when_its_series_stop(tmp_path: Path) -> None:
    async with prometheus_scraping(tmp_path) as scraped, console(tmp_path, scraped) as (app, pilot):
        await wait_until(pilot, lambda: online_with_metrics(app, scraped.instance), "the host online", timeout=90)
        stop(scraped.exporter)
        row = await wait_until(pilot, lambda: (r := shown(app, scraped.instance))["status"].startswith("offline") and r,
                               "the host offline after its exporter stopped", timeout=60)
        assert row["cpu"] == "-" and app.supervisor.fleet.nodes[scraped.instance].stale
