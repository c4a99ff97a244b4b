#!/usr/bin/env python3
"""The console at fleet scale: 500 nodes and 5,000 sessions in a real Fleet and Brain (fed frames
directly, no sockets), the real HeadyApp in Textual's headless driver.

    .venv/bin/python bench/ui_scale.py [--nodes 500] [--sessions-per-node 10] [--presses 60] [--idle-s 10]

Prints:
- key-to-paint: time from a key press to the first frame the app composes after it (p50 / p95), for
  cursor moves in the 500-row nodes table and for switching between kept screens (the first visit,
  which builds the screen, is printed on its own). Target: p95 under 50 ms.
- idle CPU: process CPU time per wall second while nobody types and the fleet is still, beside a
  minimal Textual app (one Static) measured the same way in the same run (target: at most 3x), and
  beside the same minimal app polling a no-op timer at [ui] refresh_hz, the floor of any view that
  polls a changing model.
- live CPU: the same with every node sending one metrics frame a second (for information).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TEXTUAL_FPS", "30")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual._compositor import CompositorUpdate  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402
from textual.widgets import Static  # noqa: E402

from heady_agent.clock import ManualClock  # noqa: E402
from heady_agent.protocol import Metrics  # noqa: E402
from heady_tui.config import Config, Paths  # noqa: E402
from heady_tui.ui.application import HeadyApp  # noqa: E402
from heady_tui.ui.samplefleet import FIXED_START, close_offline, feed_fleet, open_offline, spec_fleet  # noqa: E402

SIZE = (160, 50)


class MinimalApp(App[None]):
    """One Static; with `poll_hz`, also a no-op timer at that rate: what any polling view pays."""

    def __init__(self, poll_hz: float | None = None) -> None:
        super().__init__()
        self.poll_hz = poll_hz

    def compose(self) -> ComposeResult:
        yield Static("hello")

    def on_mount(self) -> None:
        if self.poll_hz:
            self.set_interval(1 / self.poll_hz, self.poll)

    def poll(self) -> None:
        pass


class PaintClock:
    """When the app hands a composed frame to its terminal. The headless driver skips turning frames
    into escape sequences, so this does it here too: the measured time includes that work."""

    def __init__(self, app: App) -> None:
        self.last_paint = 0.0
        original = app._display  # the one place a finished frame is visible, also when headless

        def display(screen, renderable) -> None:
            original(screen, renderable)
            if isinstance(renderable, CompositorUpdate):
                renderable.render_segments(app.console)
                self.last_paint = time.perf_counter()

        app._display = display

    async def press_to_paint(self, pilot, key: str, timeout: float = 2.0) -> float:
        start = time.perf_counter()
        await pilot.press(key)
        while self.last_paint < start:
            if time.perf_counter() - start > timeout:
                raise SystemExit(f"ui_scale: no repaint within {timeout}s after {key!r}")
            await asyncio.sleep(0.0005)
        return (self.last_paint - start) * 1000


def cpu_per_second(seconds: float):
    async def measure() -> float:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        return (time.process_time() - cpu0) / (time.perf_counter() - wall0)

    return measure()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run(args: argparse.Namespace) -> None:
    baselines = {}
    for label, poll_hz in (("minimal", None), ("minimal+timer", Config().ui.refresh_hz)):
        async with MinimalApp(poll_hz).run_test(size=SIZE) as pilot:
            await pilot.pause(1.0)
            baselines[label] = await cpu_per_second(args.idle_s)
    minimal_cpu = baselines["minimal"]

    with tempfile.TemporaryDirectory(prefix="heady-bench-") as tmp:
        clock = ManualClock(FIXED_START)
        config = Config.model_validate({"rebalance": {"enabled": False}})  # no consent dialog over the measurement
        paths = Paths(Path(tmp) / "config.toml", Path(tmp) / "data")
        supervisor = await open_offline(config, paths, clock)
        specs, per_node = spec_fleet(args.nodes, args.sessions_per_node)
        built = time.perf_counter()
        await feed_fleet(supervisor, clock, specs, sessions_per_node=per_node, samples=40, calls_per_session=2,
                         tick_every=10, through_store=False)
        built = time.perf_counter() - built
        fleet = supervisor.fleet
        calls = sum(s.calls for s in fleet.sessions.values())
        print(f"fleet: {len(fleet.nodes)} nodes, {len(fleet.sessions)} sessions, {calls} calls (built in {built:.1f}s)")
        app = HeadyApp(supervisor, config, manage_supervisor=False)
        try:
            async with app.run_test(size=SIZE) as pilot:
                paint = PaintClock(app)
                app.refresh_now(force=True)
                await pilot.pause(1.0)
                moves = [await paint.press_to_paint(pilot, "down" if i % 20 < 10 else "up") for i in range(args.presses)]
                # The first visit builds the costs screen; later switches show kept screens.
                first_visit = await paint.press_to_paint(pilot, "2")
                await pilot.pause(0.05)
                await paint.press_to_paint(pilot, "1")
                await pilot.pause(0.05)
                switches = []
                for i in range(max(10, args.presses // 3)):
                    switches.append(await paint.press_to_paint(pilot, "2" if i % 2 == 0 else "1"))
                    await pilot.pause(0.05)
                await pilot.pause(1.0)
                idle_cpu = await cpu_per_second(args.idle_s)

                async def live_feed() -> None:
                    seq = {n.id: n.last_seq for n in fleet.nodes.values()}
                    while True:
                        clock.advance(1.0)
                        for node in fleet.nodes.values():
                            m = node.metrics
                            if m is None or node.status != "online":
                                continue
                            seq[node.id] += 1
                            fleet.apply_frame(node.id, Metrics(journal=node.journal or "", seq=seq[node.id], ts=clock.now(),
                                                               cpu=m.cpu, load=list(m.load), mem=m.mem, swap=m.swap,
                                                               queue_depth=m.queue_depth))
                        supervisor.changed()  # what the supervisor does after applying a batch of frames
                        await asyncio.sleep(1.0)

                feeder = asyncio.create_task(live_feed())
                await pilot.pause(1.0)
                live_cpu = await cpu_per_second(args.idle_s)
                feeder.cancel()
        finally:
            await close_offline(supervisor)

    print(f"key-to-paint, cursor move in the nodes table: p50 {pct(moves, 0.5):.1f} ms, p95 {pct(moves, 0.95):.1f} ms "
          f"(n={len(moves)}, target p95 < 50 ms)")
    print(f"key-to-paint, screen switch (overview <-> costs): p50 {pct(switches, 0.5):.1f} ms, "
          f"p95 {pct(switches, 0.95):.1f} ms (n={len(switches)}, target p95 < 50 ms); "
          f"first visit to costs (builds the screen) {first_visit:.1f} ms")
    ratio = f"{idle_cpu / minimal_cpu:.1f}x" if minimal_cpu > 0 else "n/a (the minimal app used no measurable CPU)"
    timer_cpu = baselines["minimal+timer"]
    print(f"idle CPU: heady {idle_cpu * 100:.3f}% of a core, minimal Textual app {minimal_cpu * 100:.3f}% "
          f"-> ratio {ratio} (target <= 3x)")
    print(f"idle CPU: minimal Textual app with a no-op {config.ui.refresh_hz:g}/s timer {timer_cpu * 100:.3f}% "
          f"-> heady / that = {idle_cpu / max(timer_cpu, 1e-9):.1f}x")
    print(f"live CPU (every node 1 frame/s, refresh at {config.ui.refresh_hz:g}/s): heady {live_cpu * 100:.1f}% of a core")
    print(f"mean cursor move {statistics.mean(moves):.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--sessions-per-node", type=int, default=10)
    parser.add_argument("--presses", type=int, default=60)
    parser.add_argument("--idle-s", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
