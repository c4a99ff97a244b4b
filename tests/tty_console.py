"""The console on the sample fleet in a real terminal, for tests that drive it in tmux.

    python tests/tty_console.py DIR STEPS

The fleet changes STEPS times a quarter of a second apart (the clock moves, every node sends a metrics
frame), then stays still and DIR/settled is written.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "agent")]

from heady_agent.clock import ManualClock  # noqa: E402
from heady_tui.config import Config, Paths  # noqa: E402
from heady_tui.ui.app import configure_terminal  # noqa: E402
from heady_tui.ui.samplefleet import FIXED_START, close_offline, feed_fleet, open_offline, wobble  # noqa: E402


async def serve(work: Path, steps: int) -> None:
    config = Config.model_validate({"rebalance": {"enabled": False}})  # no consent dialog over the screen
    configure_terminal(config, "auto")
    from heady_tui.ui.application import HeadyApp

    clock = ManualClock(FIXED_START)
    supervisor = await open_offline(config, Paths(work / "config.toml", work / "data"), clock)
    await feed_fleet(supervisor, clock)
    app = HeadyApp(supervisor, config, manage_supervisor=False)

    async def changes() -> None:
        await asyncio.sleep(2.0)  # the first frame is painted before anything changes
        await wobble(supervisor, clock, steps=steps, interval_s=0.25)
        (work / "settled").write_text("settled\n")

    feeder = asyncio.create_task(changes())
    try:
        await app.run_async()
    finally:
        feeder.cancel()
        await close_offline(supervisor)


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), int(sys.argv[2])))
