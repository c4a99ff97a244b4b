"""The console (real Supervisor, brain and HeadyApp via App.run_test) fed by a local server speaking
the Prometheus range-query format: metrics-only nodes in the nodes table and in the detector."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from agentkit import wait_until as agent_wait
from promkit import FakePrometheus, fake_prometheus, node_answers
from uikit import FAST_DETECTOR, wait_until

from heady_tui.config import Config, ConfigError, Paths
from heady_tui.fleet import SPARKLINE_WIDTH
from heady_tui.supervisor import Supervisor
from heady_tui.ui.application import HeadyApp
from heady_tui.ui.widgets.table import KeyedTable

HOST = "host-a:9100"
STEP_S = 2.0  # several detector evaluations (0.25 s) between two samples


@asynccontextmanager
async def console(tmp_path: Path, nodes: dict[str, dict[str, float]]) -> AsyncIterator[tuple[HeadyApp, Any, FakePrometheus]]:
    with fake_prometheus() as prom:
        prom.nodes.update(nodes)
        config = Config.model_validate({"prometheus": [{"url": prom.url, "interval_s": STEP_S}],
                                        "detector": FAST_DETECTOR, "ui": {"refresh_hz": 20}})
        supervisor = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "console"))
        app = HeadyApp(supervisor, config)
        async with app.run_test(size=(160, 40)) as pilot:
            yield app, pilot, prom


def shown(app: HeadyApp, node: str, column: str) -> str:
    table = app.screen.query_one("#nodes", KeyedTable)
    return str(table.cell(node, column)) if node in table.ids() else ""


async def test_a_metrics_only_node_shows_in_the_nodes_table_with_a_full_sparkline_at_first_sight(tmp_path: Path) -> None:
    async with console(tmp_path, {HOST: node_answers(idle=0.5)}) as (app, pilot, _):
        spark = await wait_until(pilot, lambda: shown(app, HOST, "cpu_spark"), "the node's row")
        assert len(spark) == SPARKLINE_WIDTH and " " not in spark
        assert (shown(app, HOST, "status").split()[0], shown(app, HOST, "cpu")) == ("online", "50%")


async def test_the_detector_counts_metrics_only_nodes_online_and_never_unknown_between_samples(tmp_path: Path) -> None:
    nodes = {"host-a:9100": node_answers(load1=4.0), "host-b:9100": node_answers(load1=1.0)}
    async with console(tmp_path, nodes) as (app, pilot, _):
        readings = []

        def three_steps_of_readings() -> bool:
            brain = app.supervisor.brain  # set once the app has started the supervisor
            last = brain.detector.last if brain is not None else None
            if last is not None and last.online_nodes and (not readings or readings[-1].at != last.at):
                readings.append(last)
            return len(readings) > 1 and readings[-1].at - readings[0].at > 3 * STEP_S

        await wait_until(pilot, three_steps_of_readings, "three steps of detector readings", timeout=60)
        assert {(r.online_nodes, tuple(r.unknown_nodes)) for r in readings} == {(2, ())}
        assert readings[-1].metrics["node_load_variance"].value > 0


async def test_an_instance_named_like_an_agent_node_leaves_that_node_to_its_agent(tmp_path: Path) -> None:
    with fake_prometheus() as prom:
        prom.nodes.update({"build-1": node_answers(), HOST: node_answers()})
        config = Config.model_validate({"nodes": [{"name": "build-1", "url": "ws://127.0.0.1:9", "token": "t"}],
                                        "prometheus": [{"url": prom.url, "interval_s": STEP_S}]})
        supervisor = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "console"))
        await supervisor.start()
        try:
            await agent_wait(lambda: (n := supervisor.fleet.nodes.get(HOST)) is not None and n.metrics is not None,
                             what="the metrics-only node")
            node = supervisor.fleet.nodes["build-1"]
            assert (node.source, node.metrics) == ("agent", None)
        finally:
            await supervisor.stop()


async def test_an_unreadable_ca_file_stops_the_start_with_its_error(tmp_path: Path) -> None:
    config = Config.model_validate({"prometheus": [{"url": "https://127.0.0.1:9", "ca_file": str(tmp_path / "no.pem")}]})
    supervisor = Supervisor(config, Paths(tmp_path / "config.toml", tmp_path / "console"))
    with pytest.raises(ConfigError, match=r"prometheus https://127.0.0.1:9: cannot load ca_file .*no.pem"):
        await supervisor.start()
