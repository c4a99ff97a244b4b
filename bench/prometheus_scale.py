#!/usr/bin/env python3
"""A metrics-only fleet through Prometheus against the same fleet through WebSockets: console CPU and
memory, and their ratio.

    .venv/bin/python bench/prometheus_scale.py [--nodes 200,1000,5000] [--ws-nodes 200]
                                               [--interval 5] [--seconds 30]

Both ways the console is the real Supervisor with its store and brain, and every node sends one
sample (CPU, memory, load) every `--interval` seconds:

- WebSockets: `--ws-nodes` NodeLinks to one real `heady-agent` child with no sources (metrics frames
  only), one connection per node, as `bench/console_scale.py` part 1.
- Prometheus: one `[[prometheus]]` entry (`interval_s = --interval`) pointing at a child process that
  speaks the Prometheus range-query API for N node_exporter instances (tests/promkit.py), so the
  server's own CPU is not the console's. The first poll backfills the sparkline's width.

Each part runs in a fresh child process (resident memory one part freed cannot hide the next).
Reported per part: memory added (per node), samples/s received, console CPU (per 1,000 samples/s);
then the WebSocket / Prometheus ratios per sample and per node.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from agentkit import AgentProcess, wait_until  # noqa: E402
from promkit import fake_prometheus, node_answers  # noqa: E402

from heady_tui.config import Config, NodeConfig, Paths  # noqa: E402
from heady_tui.supervisor import Supervisor  # noqa: E402

MB = 2**20
RESULT = "RESULT "  # a part's figures for the parent, one JSON line


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def samples(supervisor: Supervisor) -> int:
    return sum(len(n.sample_ts) for n in supervisor.fleet.nodes.values())


async def measure(supervisor: Supervisor, nodes: int, interval: float, seconds: float, before: int, how: str) -> None:
    """Once every node has samples: samples/s, CPU and memory over `seconds`; prints both lines."""
    await wait_until(lambda: len(supervisor.fleet.nodes) == nodes and
                     all(n.status == "online" and n.metrics is not None for n in supervisor.fleet.nodes.values()),
                     timeout=300, what=f"{nodes} nodes online with samples")
    await asyncio.sleep(2 * interval)  # past the start: replays, backfill
    count0, cpu0, wall0 = samples(supervisor), time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    wall = time.perf_counter() - wall0
    cpu = (time.process_time() - cpu0) / wall
    rate = (samples(supervisor) - count0) / wall
    held = rss() - before
    print(f"{how:>10} {nodes:5d} nodes: +{held / MB:7.1f} MB ({held / nodes / 1024:6.1f} KB/node); "
          f"{rate:7.1f} samples/s; {cpu * 100:5.1f}% of a core ({cpu / max(rate, 1e-9) * 1000 * 100:6.1f}% per 1,000 samples/s)",
          flush=True)
    print(RESULT + json.dumps({"how": how, "nodes": nodes, "cpu": cpu, "rate": rate, "held": held}), flush=True)


async def through_websockets(nodes: int, interval: float, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="heady-promx-ws-") as tmp:
        agent = AgentProcess(Path(tmp), "agent", sources=(), extra={"interval_s": interval, "max_connections": nodes})
        await agent.start()
        try:
            config = Config(nodes=[NodeConfig(name=f"node{i:05d}", url=agent.url, token=agent.token) for i in range(nodes)])
            before = rss()
            supervisor = Supervisor(config, Paths(Path(tmp) / "config.toml", Path(tmp) / "data"))
            await supervisor.start()
            try:
                await measure(supervisor, nodes, interval, seconds, before, "websocket")
            finally:
                await supervisor.stop()
        finally:
            await agent.terminate()


async def through_prometheus(nodes: int, interval: float, seconds: float) -> None:
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(nodes)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory(prefix="heady-promx-prom-") as tmp:
            config = Config.model_validate({"prometheus": [{"url": url, "interval_s": interval}]})
            before = rss()
            supervisor = Supervisor(config, Paths(Path(tmp) / "config.toml", Path(tmp) / "data"))
            await supervisor.start()
            try:
                await measure(supervisor, nodes, interval, seconds, before, "prometheus")
            finally:
                await supervisor.stop()
    finally:
        server.terminate()
        server.wait(timeout=30)


def serve(nodes: int) -> None:
    """The Prometheus API for `nodes` instances with varied values, until terminated."""
    with fake_prometheus() as prom:
        prom.nodes = {f"host-{i:05d}:9100": node_answers(idle=0.4 + (i % 50) / 100, load1=(i % 16) / 4)
                      for i in range(nodes)}
        print(prom.url, flush=True)
        threading.Event().wait()


def run(args: argparse.Namespace) -> None:
    common = ["--interval", str(args.interval), "--seconds", str(args.seconds)]
    parts = [f"websocket:{args.ws_nodes}"] + [f"prometheus:{n}" for n in args.nodes.split(",")]
    results = []
    for part in parts:
        out = subprocess.run([sys.executable, __file__, "--only", part, *common], check=True, capture_output=True, text=True)
        for line in out.stdout.splitlines():
            if line.startswith(RESULT):
                results.append(json.loads(line[len(RESULT):]))
            else:
                print(line, flush=True)
    ws = results[0]
    for prom in results[1:]:
        per_sample = (ws["cpu"] / ws["rate"]) / (prom["cpu"] / prom["rate"])
        per_node = (ws["held"] / ws["nodes"]) / (prom["held"] / prom["nodes"])
        print(f"websocket / prometheus at {prom['nodes']} nodes: CPU per sample {per_sample:.1f}x, "
              f"memory per node {per_node:.1f}x, connections {ws['nodes']} vs 1")


def run_part(args: argparse.Namespace) -> None:
    how, _, size = args.only.partition(":")
    part = through_websockets if how == "websocket" else through_prometheus
    asyncio.run(part(int(size), args.interval, args.seconds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="200,1000,5000", help="Prometheus fleet sizes")
    parser.add_argument("--ws-nodes", type=int, default=200, help="WebSocket fleet size (one connection each)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between a node's samples, both ways")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per part")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one part, in this process (how run() spawns them)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the Prometheus API child
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
    elif args.only:
        run_part(args)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
