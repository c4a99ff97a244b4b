"""Console ingest benchmark: frames/s stored, lag to commit, against raw SQLite in the same run.

    .venv/bin/python bench/ingest.py [--nodes 4] [--frames 25000] [--rate 2000] [--lag-seconds 10]

1. Catch-up throughput: N real heady-agent child processes whose journals already hold F frames
   each (a realistic mix: metrics and llm.call / session events) are supervised by the real
   Supervisor (link -> store -> ack -> fleet -> brain) in this process, starting from an empty
   database. Reported: frames stored per second until every cursor reaches the end.
2. Ceiling: the same rows (same tuples, same batch size, same schema and pragmas) inserted with
   plain sqlite3 executemany, one transaction per batch, no network, no parsing. This is a floor
   of the storing alone, not a peer doing the console's work: the console also receives each frame
   over a WebSocket, validates it, updates the live fleet and feeds the brain. Two partial paths are
   measured on the same frames to show where the rest goes: Store.store_batch alone, and the
   console without sockets (Supervisor.link_frames: store, fleet, brain on already parsed frames).
3. Live lag: N pacing peers (child processes speaking protocol 1, frames stamped when sent) stream
   --rate frames/s in total for --lag-seconds; reported: p50 / p99 of commit time - frame ts.
   Pacers stand in for agents here so the offered rate is exact.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from heady_agent.clock import SystemClock
from heady_agent.journal import Journal
from heady_agent.protocol import Event, Metrics, parse_agent_frame

from heady_tui.config import Config, NodeConfig, Paths
from heady_tui.launcher import AgentLauncher, AgentSpec
from heady_tui.store import CORE_MIGRATIONS, Store, event_row, metrics_row
from heady_tui.supervisor import Supervisor

BATCH = 2000  # the link's default batch_max


def frame_mix(rng: random.Random, i: int, ts: float) -> dict:
    """One frame as an agent journals it: 1 metrics in 4, the rest session events and calls."""
    if i % 4 == 0:
        return {"type": "metrics", "ts": ts, "cpu": rng.uniform(0, 100), "load": [rng.uniform(0, 8), 1.0, 1.0],
                "mem": rng.uniform(10, 90), "swap": 0.0, "mem_available": 1 << 30, "disk_read_bps": 1e5,
                "disk_write_bps": 2e5, "net_rx_bps": 3e4, "net_tx_bps": 1e4, "procs": 300,
                "queue_depth": rng.randrange(50), "simulated": True}  # fmt: skip
    session = f"s-{i % 97}"
    if i % 50 == 1:
        return {"type": "event", "ts": ts, "kind": "session.state", "session": session,
                "data": {"state": rng.choice(("running", "idle")), "reason": "bench"}, "simulated": True}  # fmt: skip
    return {"type": "event", "ts": ts, "kind": "llm.call", "session": session, "simulated": True,
            "data": {"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": rng.randrange(5000),
                     "output_tokens": rng.randrange(2000), "cache_creation_tokens": 0,
                     "cache_read_tokens": rng.randrange(50000), "cost_usd": 0.01, "latency_ms": rng.uniform(300, 4000),
                     "ok": rng.random() > 0.02, "error": None}}  # fmt: skip


def fill_journal(path: Path, frames: int, seed: int) -> None:
    rng = random.Random(seed)
    journal = Journal(path, clock=SystemClock(), retention_rows=max(1_000_000, frames * 2))
    start = time.time() - frames * 0.01
    with journal.transaction():
        for i in range(frames):
            journal.append(frame_mix(rng, i, start + i * 0.01))
    journal.close()


async def catch_up(root: Path, nodes: int, frames: int) -> tuple[float, float, int]:
    specs = []
    for n in range(nodes):
        name = f"b{n + 1}"
        fill_journal(root / "agents" / name / "agent-journal.db", frames, seed=n)
        specs.append(AgentSpec(name=name, agent={"sources": [], "interval_s": 60.0, "node_id": name}))
    launcher = AgentLauncher(root, specs)
    node_configs = await launcher.start()
    sup = Supervisor(Config(nodes=node_configs), Paths(root / "config.toml", root / "console"))
    try:
        started = time.perf_counter()
        cpu_started = time.process_time()
        await sup.start()
        while True:
            cursors = await sup.store.cursors()
            if len(cursors) == nodes and all(seq >= frames for _, seq in cursors.values()):
                break
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started  # this process only: link, store thread, fleet, brain
        total = sum(c.frames for c in await sup.store.node_counts())
    finally:
        await sup.stop()
        await launcher.stop()
    return elapsed, cpu, total


def parsed_frames(nodes: int, frames: int) -> list[list[Metrics | Event]]:
    """The catch-up's frames as the link hands them on: parsed protocol objects, per node."""
    out = []
    for n in range(nodes):
        rng = random.Random(n)
        start = time.time() - frames * 0.01
        parsed = []
        for i in range(frames):
            frame = frame_mix(rng, i, start + i * 0.01)
            frame["seq"] = i + 1
            parsed.append(parse_agent_frame(json.dumps(frame)))
        out.append(parsed)
    return out


def ceiling(root: Path, per_node: list[list[Metrics | Event]]) -> float:
    """Rows/s of the same rows through bare sqlite3 executemany, one transaction per batch."""
    db = sqlite3.connect(root / "ceiling.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(CORE_MIGRATIONS[0])
    started = time.perf_counter()
    for stream, parsed in enumerate(per_node, start=1):
        for k in range(0, len(parsed), BATCH):
            chunk = parsed[k : k + BATCH]
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [metrics_row(stream, f) for f in chunk if isinstance(f, Metrics)],
            )
            db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", [event_row(stream, f) for f in chunk if isinstance(f, Event)])
            db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return sum(len(p) for p in per_node) / elapsed


async def store_path(root: Path, per_node: list[list[Metrics | Event]]) -> float:
    """Frames/s of Store.store_batch alone (aiosqlite, cursor, rollups) on the same frames."""
    store = await Store.open(root / "store-path.db")
    try:
        started = time.perf_counter()
        for n, parsed in enumerate(per_node):
            for k in range(0, len(parsed), BATCH):
                await store.store_batch(f"b{n + 1}", "j", parsed[k : k + BATCH])
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    return sum(len(p) for p in per_node) / elapsed


async def console_path(root: Path, per_node: list[list[Metrics | Event]]) -> float:
    """Frames/s of the console behind the sockets: a real Supervisor's link_frames (store, ack value,
    fleet, brain) on the same parsed frames, in the link's batch size."""
    sup = Supervisor(Config(), Paths(root / "config.toml", root / "console-path"))
    await sup.start()
    try:
        started = time.perf_counter()
        for n, parsed in enumerate(per_node):
            for k in range(0, len(parsed), BATCH):
                await sup.link_frames(f"b{n + 1}", "j", parsed[k : k + BATCH])
        elapsed = time.perf_counter() - started
    finally:
        await sup.stop()
    return sum(len(p) for p in per_node) / elapsed


def pacer(port_queue: multiprocessing.Queue, rate: float, seconds: float, seed: int) -> None:
    """A protocol-1 peer that streams `rate` frames/s stamped with the send time."""
    from websockets.asyncio.server import serve

    async def handler(ws) -> None:
        hello = {"type": "hello", "protocol": 1, "simulated": True, "journal": {"id": f"pace{seed}", "first_seq": 1, "last_seq": 0},
                 "node": {"id": f"pace{seed}", "hostname": "pacer", "agent_version": "bench", "os": "Linux", "cpu_count": 4, "mem_total": 1}}  # fmt: skip
        await ws.send(json.dumps(hello))
        await ws.recv()
        rng = random.Random(seed)
        seq = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            due = int((time.monotonic() - t0) * rate)
            while seq < due:
                seq += 1
                frame = frame_mix(rng, seq, time.time())
                frame["seq"] = seq
                await ws.send(json.dumps(frame))
            await asyncio.sleep(0.005)
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port_queue.put(server.sockets[0].getsockname()[1])
            await asyncio.sleep(seconds + 30)

    asyncio.run(main())


async def live_lag(root: Path, nodes: int, rate: float, seconds: float) -> tuple[list[float], int]:
    ports: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=pacer, args=(ports, rate / nodes, seconds, n), daemon=True) for n in range(nodes)]
    for p in procs:
        p.start()
    node_configs = [NodeConfig(name=f"p{n + 1}", url=f"ws://127.0.0.1:{ports.get(timeout=30)}/ws") for n in range(nodes)]
    sup = Supervisor(Config(nodes=node_configs), Paths(root / "config.toml", root / "lag"))
    lags: list[float] = []
    store_frames = sup.link_frames

    async def timed(node: str, journal: str, frames: list) -> int:
        top = await store_frames(node, journal, frames)
        now = time.time()
        lags.extend(now - f.ts for f in frames)
        return top

    sup.link_frames = timed  # type: ignore[method-assign]
    await sup.start()
    try:
        await asyncio.sleep(seconds + 1)
    finally:
        await sup.stop()
        for p in procs:
            p.terminate()
    return lags, len(lags)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--frames", type=int, default=25_000, help="journalled frames per node for the catch-up")
    parser.add_argument("--rate", type=float, default=2000.0, help="total frames/s offered for the lag test")
    parser.add_argument("--lag-seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="heady-bench-") as tmp:
        root = Path(tmp)
        elapsed, cpu, stored = asyncio.run(catch_up(root, args.nodes, args.frames))
        console_rate = stored / elapsed
        per_core = stored / cpu
        per_node = parsed_frames(args.nodes, args.frames)
        ceiling_rate = ceiling(root, per_node)
        store_rate = asyncio.run(store_path(root, per_node))
        console_path_rate = asyncio.run(console_path(root, per_node))
        del per_node  # 100,000 parsed frames left alive would add GC pauses to the lag phase
        gc.collect()
        lags, count = asyncio.run(live_lag(root, args.nodes, args.rate, args.lag_seconds))
    lags.sort()
    p50 = statistics.median(lags) * 1000 if lags else float("nan")
    p99 = lags[int(len(lags) * 0.99) - 1] * 1000 if lags else float("nan")
    achieved = count / args.lag_seconds
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}")
    print(f"catch-up: {args.nodes} agents x {args.frames} frames: {stored} stored in {elapsed:.2f} s = {console_rate:,.0f} frames/s")
    print(f"          console CPU {cpu:.2f} s (all its threads) = {per_core:,.0f} frames per CPU-second (one core)")
    print(f"ceiling:  raw sqlite3 executemany of the same rows: {ceiling_rate:,.0f} rows/s")
    print(f"ratio:    console / raw sqlite = {console_rate / ceiling_rate:.2f} wall, {per_core / ceiling_rate:.2f} per core")
    print(f"store:    Store.store_batch on the same frames: {store_rate:,.0f} frames/s = {store_rate / ceiling_rate:.2f} of raw sqlite")
    print(f"no-wire:  Supervisor.link_frames (store + fleet + brain) on the same parsed frames: {console_path_rate:,.0f} frames/s"
          f" = {console_path_rate / ceiling_rate:.2f} of raw sqlite")
    print(f"live lag: {achieved:,.0f} frames/s offered over {args.nodes} links: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
