#!/usr/bin/env python3
"""What one console holds: memory and CPU of the real Supervisor, store and Brain as the fleet grows.

    .venv/bin/python bench/console_scale.py [--nodes 100,500,1000,2000] [--sessions-per-node 10]
                                            [--rounds 20] [--links 200] [--link-seconds 20]

Each part runs in a fresh child process, so resident memory one part freed cannot hide what the
next one adds.

1. Connections: `--links` NodeLinks of a real Supervisor to one real `heady-agent` child (distinct
   node names, one WebSocket each; the agent's synthetic node sends metrics each second plus its
   sessions' events). Reported: memory the console adds per connection, frames/s received, and
   CPU per connection and per 1,000 frames/s (WebSocket, parse, store, ack, fleet, brain).
2. Fleet size (no sockets): for each node count, a console (store, fleet, brain) is fed a minute of
   history per node (metrics each second, sessions, LLM calls) through `Supervisor.link_frames`,
   the path every stored frame takes. Reported: resident memory added (MB, and KB per node), then
   the steady state of one metrics frame per node per second: CPU seconds per round (store, fleet,
   brain), the frames one CPU-second takes on that path, and the brain tick (p50 / max).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from agentkit import AgentProcess, wait_until  # noqa: E402

from heady_agent.clock import ManualClock  # noqa: E402
from heady_agent.protocol import Metrics  # noqa: E402
from heady_tui.config import Config, NodeConfig, Paths  # noqa: E402
from heady_tui.supervisor import Supervisor  # noqa: E402
from heady_tui.ui.samplefleet import FIXED_START, close_offline, feed_fleet, open_offline, spec_fleet  # noqa: E402

MB = 2**20


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


async def fleet_size(nodes: int, sessions_per_node: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="heady-scale-") as tmp:
        clock = ManualClock(FIXED_START)
        config = Config()
        paths = Paths(Path(tmp) / "config.toml", Path(tmp) / "data")
        before = rss()
        supervisor = await open_offline(config, paths, clock)
        try:
            specs, per_node = spec_fleet(nodes, sessions_per_node)
            built = time.perf_counter()
            await feed_fleet(supervisor, clock, specs, sessions_per_node=per_node, samples=60, calls_per_session=2,
                             tick_every=10)
            built = time.perf_counter() - built
            held = rss() - before
            fleet = supervisor.fleet
            brain = supervisor.brain
            assert brain is not None
            cpu_rounds, ticks = [], []
            for _ in range(rounds):
                clock.advance(1.0)
                cpu0 = time.process_time()
                for node in list(fleet.nodes.values()):
                    m = node.metrics
                    if m is None or node.status != "online" or node.journal is None:
                        continue
                    frame = Metrics(journal=node.journal, seq=node.last_seq + 1, ts=clock.now(), cpu=m.cpu,
                                    load=list(m.load), mem=m.mem, swap=m.swap, mem_available=m.mem_available,
                                    queue_depth=m.queue_depth, simulated=True)
                    await supervisor.link_frames(node.id, node.journal, [frame])
                cpu_rounds.append(time.process_time() - cpu0)
                t0 = time.perf_counter()
                await brain.tick()
                ticks.append((time.perf_counter() - t0) * 1000)
            per_round = statistics.median(cpu_rounds)
            online = sum(1 for n in fleet.nodes.values() if n.status == "online")
            print(f"{nodes:>6} nodes {len(fleet.sessions):>6} sessions: +{held / MB:7.1f} MB "
                  f"({held / nodes / 1024:6.1f} KB/node, built in {built:5.1f} s); "
                  f"1 frame/s/node: {per_round * 1000:7.1f} ms CPU per round -> "
                  f"{online / per_round:8.0f} frames per CPU-second; "
                  f"brain tick p50 {statistics.median(ticks):6.1f} ms, max {max(ticks):6.1f} ms")
        finally:
            await close_offline(supervisor)


async def connections(links: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="heady-links-") as tmp:
        agent = AgentProcess(Path(tmp), "agent", extra={"interval_s": 1.0})
        await agent.start()
        try:
            nodes = [NodeConfig(name=f"link{i:04d}", url=agent.url, token=agent.token) for i in range(links)]
            config = Config(nodes=nodes)
            before = rss()
            supervisor = Supervisor(config, Paths(Path(tmp) / "config.toml", Path(tmp) / "data"))
            await supervisor.start()
            try:
                await wait_until(lambda: all(n.status == "online" for n in supervisor.fleet.nodes.values()), timeout=120,
                                 what="every link online")
                await asyncio.sleep(5.0)  # past the replay of the agent's journal
                seqs = {n.id: n.last_seq for n in supervisor.fleet.nodes.values()}
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await asyncio.sleep(seconds)
                wall = time.perf_counter() - wall0
                cpu = (time.process_time() - cpu0) / wall
                frames = sum(n.last_seq - seqs[n.id] for n in supervisor.fleet.nodes.values()) / wall
                held = rss() - before
            finally:
                await supervisor.stop()
        finally:
            await agent.terminate()
    print(f"{links} live connections: +{held / MB:.1f} MB ({held / links / 1024:.1f} KB per connection); "
          f"{frames:.0f} frames/s received ({frames / links:.1f} per connection); {cpu * 100:.1f}% of a core "
          f"({cpu * 100 / links:.3f}% per connection, {cpu / max(frames, 1e-9) * 1000 * 100:.1f}% of a core per 1,000 frames/s)")


def run(args: argparse.Namespace) -> None:
    common = ["--sessions-per-node", str(args.sessions_per_node), "--rounds", str(args.rounds),
              "--links", str(args.links), "--link-seconds", str(args.link_seconds)]
    parts = (["links"] if args.links else []) + [f"fleet:{n}" for n in args.nodes.split(",")]
    for part in parts:
        subprocess.run([sys.executable, __file__, "--only", part, *common], check=True)


def run_part(args: argparse.Namespace) -> None:
    kind, _, size = args.only.partition(":")
    if kind == "links":
        asyncio.run(connections(args.links, args.link_seconds))
    else:
        asyncio.run(fleet_size(int(size), args.sessions_per_node, args.rounds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="100,500,1000,2000")
    parser.add_argument("--sessions-per-node", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--links", type=int, default=200)
    parser.add_argument("--link-seconds", type=float, default=20.0)
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one part, in this process (how run() spawns them)
    args = parser.parse_args()
    if args.only:
        run_part(args)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
