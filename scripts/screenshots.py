#!/usr/bin/env python3
"""Regenerate the README's SVG screenshots of the real console on the demo fleet.

    .venv/bin/python scripts/screenshots.py [--out screenshots] [--size 140x44]

It starts `heady demo --scenario queue-overflow` in-process (real synthetic agents as child
processes, a real supervisor, store and brain in a temporary directory), drives the Textual app
with Pilot and saves: overview, node detail, costs, healing and the consent dialog.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TEXTUAL_FPS", "30")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from heady_tui.config import Config, Paths  # noqa: E402
from heady_tui.launcher import demo_launcher  # noqa: E402
from heady_tui.supervisor import Supervisor  # noqa: E402
from heady_tui.ui.application import HeadyApp  # noqa: E402
from heady_tui.ui.modals.consent import ConsentModal  # noqa: E402

# The detector decides within seconds so the consent dialog shows up quickly.
CONFIG = {
    "detector": {"evaluation_interval_s": 0.5, "for_seconds": 2, "clear_seconds": 2, "keep_firing_seconds": 2},
    "cost": {"daily_budget_usd": 250, "monthly_budget_usd": 4000},
    "healing": {"group_wait_s": 2, "light_interval_s": 3, "auto_dispatch": ["environment_sync"]},
}


async def wait(pilot, condition, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: timed out waiting for {what}")
        await pilot.pause(0.2)


async def capture(out: Path, size: tuple[int, int]) -> list[Path]:
    saved: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="heady-shots-") as tmp:
        paths = Paths(Path(tmp) / "config.toml", Path(tmp) / "data")
        config = Config.model_validate(CONFIG)
        launcher = demo_launcher(paths.data_dir, nodes=4, scenario="queue-overflow", speed=3.0, seed=7)
        supervisor = Supervisor(config, paths, simulated=True, launcher=launcher)
        app = HeadyApp(supervisor, config)

        def save(name: str) -> None:
            app.refresh_now(force=True)
            path = out / f"{name}.svg"
            app.save_screenshot(filename=path.name, path=str(out))
            saved.append(path)

        async with app.run_test(size=size) as pilot:
            fleet = supervisor.fleet
            await wait(pilot, lambda: len(fleet.online_nodes()) == 4 and len(fleet.sessions) > 8, "the demo fleet")
            await pilot.pause(6.0)  # some history for the sparklines
            if not isinstance(app.screen, ConsentModal):
                save("overview")
            await wait(pilot, lambda: isinstance(app.screen, ConsentModal), "the consent dialog")
            await pilot.pause(0.5)
            save("consent")
            await pilot.press("o")
            await wait(pilot, lambda: not isinstance(app.screen, ConsentModal), "the dialog to close")
            await pilot.pause(3.0)
            if not (out / "overview.svg") in saved:
                save("overview")
            app.open_node("sim-1")
            await wait(pilot, lambda: getattr(app.screen, "VIEW", None) == "node" and "sim-1" in supervisor.details, "node detail")
            await pilot.pause(1.0)
            save("node")
            await pilot.press("escape", "2")
            await wait(pilot, lambda: getattr(app.screen, "VIEW", None) == "costs", "costs")
            await pilot.pause(0.5)
            save("costs")
            await pilot.press("3")
            await wait(pilot, lambda: getattr(app.screen, "VIEW", None) == "healing", "healing")
            await pilot.pause(0.5)
            save("healing")
    return saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots", help="directory for the SVGs")
    parser.add_argument("--size", default="140x44", help="terminal size, COLSxROWS (default 140x44)")
    args = parser.parse_args()
    try:
        cols, rows = (int(part) for part in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must look like 140x44, not {args.size!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(capture(args.out, (cols, rows))):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
