"""Test kit for the data plane: a real Supervisor on given nodes, recording what it publishes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from heady_tui.config import Config, NodeConfig, Paths
from heady_tui.supervisor import Supervisor

# No back-off jitter, so reconnect timing is predictable.
NO_JITTER = {"rng": lambda: 0.0}


@asynccontextmanager
async def supervisor_on(
    tmp_path: Path, nodes: list[NodeConfig], link_options: dict[str, Any] | None = None, **kwargs: Any
) -> AsyncIterator[Supervisor]:
    """Started on `nodes`, stopped on exit; every HeadyEvent lands in `sup.test_events`."""
    sup = Supervisor(
        Config(nodes=nodes),
        Paths(tmp_path / "config.toml", tmp_path / "data"),
        link_options={**NO_JITTER, **(link_options or {})},
        **kwargs,
    )
    events: list = []
    sup.subscribe(events.append)
    sup.test_events = events  # type: ignore[attr-defined]
    await sup.start()
    try:
        yield sup
    finally:
        await sup.stop()
