"""Agent overhead against its peers, measured side by side in one run.

heady-agent (child process, 1 s interval, a subscriber reading every frame), prometheus-node-exporter
(scraped once a second) and glances in REST server mode (polled once a second) run at the same time;
each one's CPU (% of one core, from cpu_times deltas) and RSS are sampled once a second after a
warm-up. Prints the figures and heady's ratios; targets: CPU <= 1.0x node_exporter's, RSS <= 40 MB.

    .venv/bin/python bench/agent_overhead.py [--seconds 60] [--warmup 5] [--source NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from websockets.asyncio.client import connect

RSS_TARGET_MB = 40.0
CPU_RATIO_TARGET = 1.0
TOKEN = "bench-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Subject:
    name: str
    proc: subprocess.Popen[bytes]
    cpu_start: float = 0.0
    wall_start: float = 0.0
    rss: list[int] = field(default_factory=list)
    polls: int = 0
    poll_errors: int = 0

    def cpu_seconds(self) -> float:
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def mark(self) -> None:
        self.cpu_start = self.cpu_seconds()
        self.wall_start = time.monotonic()

    def sample(self) -> None:
        self.rss.append(psutil.Process(self.proc.pid).memory_info().rss)

    def cpu_percent(self) -> float:
        return 100.0 * (self.cpu_seconds() - self.cpu_start) / (time.monotonic() - self.wall_start)


async def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url, timeout=2)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _start_heady(workdir: Path, sources: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
    config = workdir / "agent.toml"
    config.write_text(
        "[agent]\n"
        'listen = "127.0.0.1:0"\n'
        f'token = "{TOKEN}"\n'
        "interval_s = 1.0\n"
        f"sources = {json.dumps(sources)}\n"
    )
    ready = workdir / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "heady_agent", "--config", str(config), "--ready-file", str(ready),
         "--data-dir", str(workdir), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "agent.log", "wb"),
    )
    return proc, ready


async def _heady_subscriber(url: str, subject: Subject, stop: asyncio.Event) -> None:
    async with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        await ws.send(json.dumps({"type": "subscribe", "since": 0, "journal": None}))
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), 0.5)
            except asyncio.TimeoutError:
                continue
            frame = json.loads(text)
            subject.polls += 1
            if frame.get("seq"):
                await ws.send(json.dumps({"type": "ack", "seq": frame["seq"]}))


async def _poller(url: str, subject: Subject, stop: asyncio.Event, headers: dict[str, str] | None = None) -> None:
    async with httpx.AsyncClient(headers=headers) as client:
        while not stop.is_set():
            try:
                response = await client.get(url, timeout=5)
                response.raise_for_status()
                subject.polls += 1
            except httpx.HTTPError:
                subject.poll_errors += 1
            await asyncio.sleep(1.0)


async def run(seconds: float, warmup: float, sources: list[str]) -> int:
    subjects: list[Subject] = []
    tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    missing: list[str] = []
    with tempfile.TemporaryDirectory(prefix="heady-bench-") as tmp:
        workdir = Path(tmp)
        heady_proc, ready = _start_heady(workdir, sources)
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                if heady_proc.poll() is not None or time.monotonic() > deadline:
                    print("heady-agent failed to start:", (workdir / "agent.log").read_text(), file=sys.stderr)
                    return 1
                await asyncio.sleep(0.1)
            heady = Subject("heady-agent", heady_proc)
            subjects.append(heady)
            tasks.append(asyncio.create_task(_heady_subscriber(ready.read_text().strip(), heady, stop)))

            exporter_bin = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
            if exporter_bin:
                port = _free_port()
                proc = subprocess.Popen(
                    [exporter_bin, f"--web.listen-address=127.0.0.1:{port}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                await _wait_http(f"http://127.0.0.1:{port}/metrics")
                subjects.append(Subject("node_exporter", proc))
                tasks.append(asyncio.create_task(_poller(f"http://127.0.0.1:{port}/metrics", subjects[-1], stop)))
            else:
                missing.append("prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)")

            beside = Path(sys.executable).with_name("glances")  # installed into this venv
            glances_bin = str(beside) if beside.exists() else shutil.which("glances")
            if glances_bin:
                port = _free_port()
                proc = subprocess.Popen(
                    [glances_bin, "-w", "--disable-webui", "--bind", "127.0.0.1", "--port", str(port), "-t", "1"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                try:
                    await _wait_http(f"http://127.0.0.1:{port}/api/4/status")
                except RuntimeError as exc:
                    proc.kill()
                    missing.append(f"glances did not serve its REST API ({exc}; its web mode needs fastapi and uvicorn)")
                else:
                    subjects.append(Subject("glances", proc))
                    tasks.append(asyncio.create_task(_poller(f"http://127.0.0.1:{port}/api/4/all", subjects[-1], stop)))
            else:
                missing.append("glances is not installed (pip install glances)")

            await asyncio.sleep(warmup)
            for subject in subjects:
                subject.mark()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for subject in subjects:
                    subject.sample()
                await asyncio.sleep(1.0)
            cpu = {s.name: s.cpu_percent() for s in subjects}
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for subject in subjects:
                subject.proc.terminate()
            heady_proc.terminate()
            for subject in subjects:
                try:
                    subject.proc.wait(10)
                except subprocess.TimeoutExpired:
                    subject.proc.kill()

    print(f"agent overhead over {seconds:.0f} s at a 1 s interval (after {warmup:.0f} s warm-up), sources: {sources or 'none'}")
    print(f"{'subject':<15} {'CPU % of 1 core':>16} {'RSS mean MB':>12} {'RSS max MB':>11} {'polls':>6} {'errors':>7}")
    for s in subjects:
        rss_mb = [r / 2**20 for r in s.rss]
        print(f"{s.name:<15} {cpu[s.name]:>16.2f} {sum(rss_mb) / len(rss_mb):>12.1f} {max(rss_mb):>11.1f} {s.polls:>6} {s.poll_errors:>7}")
    for reason in missing:
        print(f"missing peer: {reason}")
    heady_rss = max(heady.rss) / 2**20
    verdicts = [f"heady RSS max {heady_rss:.1f} MB vs target {RSS_TARGET_MB:.0f} MB: {'ok' if heady_rss <= RSS_TARGET_MB else 'MISSED'}"]
    for peer in ("node_exporter", "glances"):
        if peer in cpu and cpu[peer] > 0:
            ratio = cpu["heady-agent"] / cpu[peer]
            peer_rss = max(next(s for s in subjects if s.name == peer).rss) / 2**20
            line = f"heady / {peer}: CPU {ratio:.2f}x, RSS {heady_rss / peer_rss:.2f}x"
            if peer == "node_exporter":
                line += f" (target CPU <= {CPU_RATIO_TARGET:.1f}x: {'ok' if ratio <= CPU_RATIO_TARGET else 'MISSED'})"
            verdicts.append(line)
    for line in verdicts:
        print(line)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement length (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds ignored after start (default 5)")
    parser.add_argument("--source", dest="sources", action="append", default=[], help="heady-agent source (default: none)")
    args = parser.parse_args()
    return asyncio.run(run(args.seconds, args.warmup, args.sources))


if __name__ == "__main__":
    sys.exit(main())
