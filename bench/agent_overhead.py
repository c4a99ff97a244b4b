"""Agent overhead against its peers, measured side by side in one run.

heady-agent (child process, 1 s interval, a subscriber reading every frame), prometheus-node-exporter
(scraped once a second) and glances in REST server mode (polled once a second) run at the same time;
each one's CPU (% of one core, from cpu_times deltas) and RSS are sampled once a second after a
warm-up. Prints the figures and heady's ratios; targets: CPU <= 1.0x node_exporter's, RSS <= 40 MB.

With --tail CLIENT --sessions N the bench also writes N live transcripts of that client (Claude Code
or Codex, in their real record shapes) in a temporary home the agent watches, one record per
session per second, spread over the second; the target is then CPU <= 0.25x node_exporter's.

    .venv/bin/python bench/agent_overhead.py [--seconds 60] [--warmup 5] [--source NAME ...]
    .venv/bin/python bench/agent_overhead.py --tail claude-code --sessions 50
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
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psutil
from websockets.asyncio.client import connect

RSS_TARGET_MB = 40.0
CPU_RATIO_TARGET = 1.0
TAIL_CPU_RATIO_TARGET = 0.25  # tailing live transcripts: a quarter of what node_exporter costs
TAIL_CLIENTS = ("claude-code", "codex")
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


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TranscriptWriter:
    """N live sessions of one client, each appending one record a second, as the client does."""

    def __init__(self, client: str, root: Path, sessions: int) -> None:
        self.client = client
        self.ids = [str(uuid.UUID(int=i + 1)) for i in range(sessions)]
        self.count = 0
        if client == "claude-code":
            folder = root / "projects" / "-home-dev-src-app"
            self.paths = [folder / f"{sid}.jsonl" for sid in self.ids]
        else:
            folder = root / "sessions" / "2026" / "12" / "05"
            self.paths = [folder / f"rollout-2026-12-05T08-00-00-{sid}.jsonl" for sid in self.ids]
        folder.mkdir(parents=True, exist_ok=True)
        self.totals = [0] * sessions

    def record(self, i: int) -> dict[str, object]:
        n, sid, now = self.count, self.ids[i], time.time()
        if self.client == "claude-code":
            base = {"uuid": f"{sid}-{n}", "parentUuid": f"{sid}-{n - 1}", "sessionId": sid, "cwd": "/home/dev/src/app",
                    "timestamp": _iso(now), "isSidechain": False, "version": "2.1.332", "gitBranch": "main", "userType": "external"}
            if n % 2 == 0:
                return {**base, "type": "user", "message": {"role": "user", "content": "continue with the next step"}}
            usage = {"input_tokens": 12, "output_tokens": 240, "cache_creation_input_tokens": 900, "cache_read_input_tokens": 21000,
                     "cache_creation": {"ephemeral_5m_input_tokens": 900, "ephemeral_1h_input_tokens": 0}, "service_tier": "standard"}
            return {**base, "type": "assistant", "requestId": f"req_{sid}{n}", "message": {
                "id": f"msg_{sid}{n}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                "content": [{"type": "text", "text": "Step done; moving on to the next file."}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": usage}}
        if n == 0:
            return {"timestamp": _iso(now), "type": "session_meta", "payload": {"id": sid, "timestamp": _iso(now), "cwd": "/home/dev/src/app",
                                                                                 "originator": "codex_cli_rs", "cli_version": "0.171.0"}}
        if n % 2 == 1:
            return {"timestamp": _iso(now), "type": "response_item", "payload": {
                "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Step done."}]}}
        self.totals[i] += 1200
        last = {"input_tokens": 1000, "cached_input_tokens": 800, "output_tokens": 200, "reasoning_output_tokens": 50, "total_tokens": 1200}
        total = {k: v * (self.totals[i] // 1200) for k, v in last.items()}
        return {"timestamp": _iso(now), "type": "event_msg", "payload": {
            "type": "token_count", "info": {"last_token_usage": last, "total_token_usage": total, "model_context_window": 272000},
            "rate_limits": None}}

    async def run(self, stop: asyncio.Event) -> None:
        gap = 1.0 / len(self.paths)
        while not stop.is_set():
            for i, path in enumerate(self.paths):
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(self.record(i)) + "\n")
                await asyncio.sleep(gap)
            self.count += 1


def _start_heady(workdir: Path, sources: list[str], roots: dict[str, Path] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    config = workdir / "agent.toml"
    sections = "".join(f'[agent.{name.replace("-", "_")}]\nroots = ["{root}"]\n' for name, root in (roots or {}).items())
    config.write_text(
        "[agent]\n"
        'listen = "127.0.0.1:0"\n'
        f'token = "{TOKEN}"\n'
        "interval_s = 1.0\n"
        f"sources = {json.dumps(sources)}\n"
        + sections
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


async def run(seconds: float, warmup: float, sources: list[str], tail: str | None = None, sessions: int = 0) -> int:
    subjects: list[Subject] = []
    tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    missing: list[str] = []
    with tempfile.TemporaryDirectory(prefix="heady-bench-") as tmp:
        workdir = Path(tmp)
        roots: dict[str, Path] = {}
        if tail is not None:
            roots[tail] = workdir / "client-home"
            sources = sorted({*sources, tail})
            writer = TranscriptWriter(tail, roots[tail], sessions)
            tasks.append(asyncio.create_task(writer.run(stop)))
        heady_proc, ready = _start_heady(workdir, sources, roots)
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
    if tail is not None:
        print(f"tailing {sessions} live {tail} transcripts, one record per session per second")
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
                target = TAIL_CPU_RATIO_TARGET if tail is not None else CPU_RATIO_TARGET
                line += f" (target CPU <= {target:.2f}x: {'ok' if ratio <= target else 'MISSED'})"
            verdicts.append(line)
    for line in verdicts:
        print(line)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement length (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds ignored after start (default 5)")
    parser.add_argument("--source", dest="sources", action="append", default=[], help="heady-agent source (default: none)")
    parser.add_argument("--tail", choices=TAIL_CLIENTS, help="also write live transcripts of this client for the agent to tail")
    parser.add_argument("--sessions", type=int, default=50, help="live transcripts with --tail (default 50)")
    args = parser.parse_args()
    if args.tail is not None and args.sessions < 1:
        parser.error("--sessions must be at least 1")
    return asyncio.run(run(args.seconds, args.warmup, args.sources, args.tail, args.sessions))


if __name__ == "__main__":
    sys.exit(main())
