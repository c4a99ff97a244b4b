"""Two queue-overflow agents on loopback and a config file a headless `heady` rebalances under a
persistent grant: the set-up of the end-to-end tests that kill or replace a console mid-run."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkit import running_agent

from heady_tui.config import Paths


@dataclass
class OverflowFleet:
    sources: dict[str, Any]  # node name -> its synthetic source (reads the concurrency the agent applies)
    before: dict[str, int]  # node name -> concurrency before any console acted
    paths: Paths
    grant_id: str

    @property
    def common(self) -> tuple[str, ...]:
        """The CLI arguments naming this fleet's config and data directory."""
        return ("--config", str(self.paths.config_file), "--data-dir", str(self.paths.data_dir))


def heady(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heady_tui", *args], capture_output=True, text=True, timeout=60)


def _write_config(path: Path, nodes: list[dict[str, str]], extra: list[str]) -> None:
    lines = []
    for n in nodes:
        lines += ["[[nodes]]", f'name = "{n["name"]}"', f'url = "{n["url"]}"', f'token = "{n["token"]}"', ""]
    lines += [
        "[detector]", "evaluation_interval_s = 0.25", "for_seconds = 1", "clear_seconds = 2", "keep_firing_seconds = 1", "",
        # A run that neither finishes nor balances by itself: it is still live whenever the test looks.
        "[rebalance]", "step_interval_s = 0.25", "balanced_checks = 1000", "max_duration_s = 600", "",
        *extra,
    ]
    path.write_text("\n".join(lines))


async def overflow_agents(stack: AsyncExitStack, tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Two queue-overflow agents: their synthetic sources and their [[nodes]] entries, by node name."""
    sources: dict[str, Any] = {}
    nodes = []
    for i in range(2):
        agent = await stack.enter_async_context(running_agent(
            tmp_path, scenario="queue-overflow", node_index=i, node_count=2, speed=10.0, name=f"n{i}",
            extra={"interval_s": 0.25}))
        sources[f"n{i}"] = agent.server.sources[0]
        nodes.append({"name": f"n{i}", "url": agent.url, "token": agent.token})
    return sources, nodes


async def overflow_fleet(stack: AsyncExitStack, tmp_path: Path, reason: str, extra_config: list[str] | None = None) -> OverflowFleet:
    sources, nodes = await overflow_agents(stack, tmp_path)
    paths = Paths(tmp_path / "config.toml", tmp_path / "data")
    _write_config(paths.config_file, nodes, extra_config or [])
    fleet = OverflowFleet(sources, {name: s.concurrency for name, s in sources.items()}, paths, "")
    granted = heady("permissions", "grant", "--scope", "persistent", "--reason", reason, *fleet.common)
    assert granted.returncode == 0, granted.stderr
    fleet.grant_id = json.loads(heady("permissions", "list", "--json", *fleet.common).stdout)[0]["id"]
    return fleet
