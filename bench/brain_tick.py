"""How long brain.tick() holds the event loop on a busy fleet, against the ingest it interrupts.

    .venv/bin/python bench/brain_tick.py [--nodes 4] [--sessions 50] [--calls-per-s 100] [--minutes 10]

A real Supervisor (real store in a temporary directory, the real Brain and engines) is fed through
its link sink, as the links feed it, with no sockets: N nodes, S sessions each, a fleet-wide rate of
llm.call events, one metrics frame per node per second, a session state change now and then. Time is
a ManualClock moved one second per simulated second, so the windows (60 s detector, 300 s healing)
fill exactly as they would live; the brain is ticked every `detector.evaluation_interval_s`.

Reported: tick wall time and main-thread CPU time (what the event loop is held for) p50 / p95 / max
over the run, and, as the peer measured in the same run, the time the supervisor spends taking in one
evaluation interval's frames (store + fleet + brain.on_frame): the tick should cost a small fraction of it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from heady_agent.clock import ManualClock
from heady_agent.protocol import Event, Hello, JournalInfo, Metrics, NodeInfo

from heady_tui.config import Config, Paths
from heady_tui.supervisor import Supervisor

MODELS = ("claude-sonnet-4-5", "claude-opus-4-5", "gpt-5")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * p / 100) - 1)]


async def run(nodes: int, sessions: int, rate: float, minutes: float, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    clock = ManualClock(start=time.time() - minutes * 60)
    with tempfile.TemporaryDirectory(prefix="heady-tick-") as tmp:
        root = Path(tmp)
        # The tick loop is pushed out of the way; this script ticks at the configured interval itself.
        config = Config.model_validate({"detector": {"evaluation_interval_s": 1e6}})
        interval = Config().detector.evaluation_interval_s
        sup = Supervisor(config, Paths(root / "config.toml", root / "data"), clock=clock)
        await sup.start()
        names = [f"n{i + 1}" for i in range(nodes)]
        seqs = dict.fromkeys(names, 0)

        def next_seq(node: str) -> int:
            seqs[node] += 1
            return seqs[node]

        try:
            for name in names:
                hello = Hello(protocol=1, node=NodeInfo(id=name, hostname=name, agent_version="1.0", os="Linux",
                                                         cpu_count=8, mem_total=16 << 30),
                              journal=JournalInfo(id=f"j-{name}", first_seq=1, last_seq=0))
                await sup.link_hello(name, hello, None)
                sup.link_status(name, "online", None)
                started = [Event(journal=f"j-{name}", seq=next_seq(name), ts=clock.now(), kind="session.started",
                                 session=f"s{k}", data={"source": "claude-code", "project": f"p{k % 7}", "model": MODELS[k % 3]})
                           for k in range(sessions)]
                await sup.link_frames(name, f"j-{name}", started)
            ticks_wall, ticks_cpu, ingest = [], [], []
            carry = 0.0
            pending: dict[str, list[Metrics | Event]] = {n: [] for n in names}
            for second in range(int(minutes * 60)):
                clock.advance(1.0)
                now = clock.now()
                carry += rate
                for _ in range(int(carry)):
                    node = rng.choice(names)
                    ok = rng.random() > 0.03
                    pending[node].append(Event(
                        journal=f"j-{node}", seq=next_seq(node), ts=now - rng.random(), kind="llm.call",
                        session=f"s{rng.randrange(sessions)}",
                        data={"provider": "anthropic", "model": rng.choice(MODELS), "input_tokens": rng.randrange(5000),
                              "output_tokens": rng.randrange(2000), "cache_creation_tokens": 0,
                              "cache_read_tokens": rng.randrange(50_000), "cost_usd": None,
                              "latency_ms": rng.uniform(300, 4000), "ok": ok, "error": None if ok else "http_529"}))
                carry -= int(carry)
                for node in names:
                    pending[node].append(Metrics(journal=f"j-{node}", seq=next_seq(node), ts=now, cpu=rng.uniform(10, 70),
                                                 load=[rng.uniform(1, 6), 2.0, 2.0], mem=50.0, swap=0.0,
                                                 mem_available=8 << 30, queue_depth=rng.randrange(40)))
                    if rng.random() < 0.05:
                        pending[node].append(Event(journal=f"j-{node}", seq=next_seq(node), ts=now, kind="session.state",
                                                   session=f"s{rng.randrange(sessions)}",
                                                   data={"state": rng.choice(("running", "idle")), "reason": "bench"}))
                if (second + 1) % interval:
                    continue
                started_at = time.perf_counter()
                for node in names:
                    await sup.link_frames(node, f"j-{node}", pending[node])
                    pending[node] = []
                ingest.append(time.perf_counter() - started_at)
                wall, cpu = time.perf_counter(), time.thread_time()
                await sup.brain.tick()
                ticks_cpu.append(time.thread_time() - cpu)
                ticks_wall.append(time.perf_counter() - wall)
        finally:
            await sup.stop()
    return {"wall": ticks_wall, "cpu": ticks_cpu, "ingest": ingest}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=50, help="sessions per node")
    parser.add_argument("--calls-per-s", type=float, default=100.0, help="llm.call events per second, fleet-wide")
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated minutes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", help="write a pyinstrument HTML profile of the run to this file")
    args = parser.parse_args()
    coro = run(args.nodes, args.sessions, args.calls_per_s, args.minutes, args.seed)
    if args.profile:
        from pyinstrument import Profiler

        with Profiler(async_mode="enabled") as profiler:
            result = asyncio.run(coro)
        Path(args.profile).write_text(profiler.output_html())
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    else:
        result = asyncio.run(coro)
    ms = {k: [x * 1000 for x in v] for k, v in result.items()}
    print(f"fleet: {args.nodes} nodes x {args.sessions} sessions, {args.calls_per_s:g} calls/s, {args.minutes:g} simulated min, "
          f"{len(ms['wall'])} ticks")
    for key, label in (("wall", "tick wall"), ("cpu", "tick CPU (event loop held)")):
        print(f"{label:27}: p50 {statistics.median(ms[key]):6.2f} ms  p95 {pct(ms[key], 95):6.2f} ms  max {max(ms[key]):6.2f} ms")
    print(f"{'ingest of one interval':27}: p50 {statistics.median(ms['ingest']):6.2f} ms  p95 {pct(ms['ingest'], 95):6.2f} ms")
    print(f"ratio: tick CPU p95 / ingest p50 of the same interval = {pct(ms['cpu'], 95) / statistics.median(ms['ingest']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
