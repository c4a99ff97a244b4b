#!/usr/bin/env python3
"""What an unattended console costs: heady beside glances, each in tmux at 160x50, nobody typing.

    .venv/bin/python bench/ui_idle.py [--seconds 60] [--warmup 10]

Four runs in one go, one after the other on the same machine:
- heady on the calm 4-node demo (`heady demo`: the console and its 4 simulated agents, which are
  child processes; the console's own share is printed too), then the same with `[ui] cell_diff =
  false` (Textual's line updates instead of only the changed cells);
- heady on a 100-node / 1,000-session fleet (heady_tui.ui.samplefleet, every online node sending
  one metrics frame a second), started by this script with `--serve-fleet`;
- glances (`pip install glances`; its curses UI, default 2 s refresh) as the reference.
For each: CPU % of one core of the program's whole process tree, and bytes written to the terminal
per second (tmux pipe-pane into a file). Targets: heady at or below glances on both figures, and
below 5 % CPU / 10 KB/s on the calm demo.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT = 160, 50
CALM_TARGET_CPU, CALM_TARGET_BPS = 5.0, 10_000


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of (the process, it and all its descendants)."""
    root = psutil.Process(pid)
    own = total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
        if process.pid == pid:
            own = times.user + times.system
    return own, total


def measure(label: str, command: str, seconds: float, warmup: float, workdir: Path) -> tuple[float, float, float]:
    """(CPU % of a core of the whole process tree, of the program's own process, bytes/s to the
    terminal) of `command` in a fresh tmux server."""
    socket = f"heady-bench-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", socket]
    out = workdir / f"{label}.bytes"
    try:
        subprocess.run([*tmux, "new-session", "-d", "-s", "bench", "-x", str(WIDTH), "-y", str(HEIGHT),
                        "-e", "TERM=xterm-256color", command], check=True)
        time.sleep(warmup)  # start-up paints are not what is measured
        pid = int(subprocess.run([*tmux, "list-panes", "-t", "bench", "-F", "#{pane_pid}"], check=True,
                                 capture_output=True, text=True).stdout.split()[0])
        subprocess.run([*tmux, "pipe-pane", "-t", "bench", "-o", f"cat >> {shlex.quote(str(out))}"], check=True)
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = cpu_seconds(pid), time.monotonic()
        screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "bench"], capture_output=True, text=True).stdout
        subprocess.run([*tmux, "pipe-pane", "-t", "bench"], check=True)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    written = out.stat().st_size if out.exists() else 0
    elapsed = wall1 - wall0
    if not screen.strip():
        raise SystemExit(f"ui_idle: {label} showed nothing; is it installed and does it start?")
    return (cpu1[1] - cpu0[1]) / elapsed * 100, (cpu1[0] - cpu0[0]) / elapsed * 100, written / elapsed


async def serve_fleet(nodes: int, sessions_per_node: int) -> None:
    """The console on a sample fleet in this terminal, every online node sending a frame a second."""
    from heady_agent.clock import ManualClock
    from heady_tui.config import Config, Paths
    from heady_tui.ui.app import configure_terminal
    from heady_tui.ui.samplefleet import FIXED_START, close_offline, feed_fleet, open_offline, spec_fleet, wobble

    config = Config.model_validate({"rebalance": {"enabled": False}})  # no consent dialog over the measurement
    configure_terminal(config, "auto")
    from heady_tui.ui.application import HeadyApp

    with tempfile.TemporaryDirectory(prefix="heady-bench-") as tmp:
        clock = ManualClock(FIXED_START)
        paths = Paths(Path(tmp) / "config.toml", Path(tmp) / "data")
        supervisor = await open_offline(config, paths, clock)
        specs, per_node = spec_fleet(nodes, sessions_per_node)
        await feed_fleet(supervisor, clock, specs, sessions_per_node=per_node, samples=40, calls_per_session=2,
                         tick_every=10, through_store=False)
        app = HeadyApp(supervisor, config, manage_supervisor=False)
        feeder = asyncio.create_task(wobble(supervisor, clock))
        try:
            await app.run_async()
        finally:
            feeder.cancel()
            await close_offline(supervisor)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--serve-fleet", nargs=2, type=int, metavar=("NODES", "SESSIONS_PER_NODE"),
                        help="(used by the benchmark itself) run the console on a sample fleet")
    args = parser.parse_args()
    if args.serve_fleet:
        asyncio.run(serve_fleet(*args.serve_fleet))
        return 0
    if shutil.which("tmux") is None:
        raise SystemExit("ui_idle: needs tmux")
    bindir = Path(sys.executable).parent
    glances = shutil.which("glances", path=str(bindir)) or shutil.which("glances")
    if glances is None:
        raise SystemExit("ui_idle: needs glances (pip install glances)")
    python = shlex.quote(sys.executable)
    with tempfile.TemporaryDirectory(prefix="heady-idle-") as tmp:
        work = Path(tmp)
        env = f"cd {shlex.quote(str(ROOT))} && XDG_CONFIG_HOME={work}/xdg-config XDG_DATA_HOME={work}/xdg-data"
        line_updates = work / "line-updates.toml"
        line_updates.write_text("[ui]\ncell_diff = false\n")
        runs = {
            "heady calm demo (4 nodes)": f"{env} {python} -m heady_tui demo --data-dir {work}/demo",
            "  the same, [ui] cell_diff = false": f"{env} {python} -m heady_tui --config {line_updates} demo"
                                                  f" --data-dir {work}/demo-lines",
            "heady fleet (100 nodes, 1,000 sessions)": f"{env} {python} bench/ui_idle.py --serve-fleet 100 10",
            "glances": f"{shlex.quote(glances)} --disable-check-update",
        }
        figures = {}
        for index, (label, command) in enumerate(runs.items()):
            figures[label] = measure(f"run{index}", command, args.seconds, args.warmup, work)
            cpu, own, bps = figures[label]
            print(f"{label:<42} CPU {cpu:5.1f}% of a core (its own process {own:4.1f}%)   "
                  f"terminal {bps / 1000:6.1f} KB/s", flush=True)
    ref_cpu, _, ref_bps = figures["glances"]
    calm_cpu, _, calm_bps = figures["heady calm demo (4 nodes)"]
    print(f"calm demo target: < {CALM_TARGET_CPU:g}% CPU and < {CALM_TARGET_BPS / 1000:g} KB/s -> "
          f"{'met' if calm_cpu < CALM_TARGET_CPU and calm_bps < CALM_TARGET_BPS else 'NOT met'}")
    for label, (cpu, _, bps) in figures.items():
        if label != "glances":
            print(f"{label}: CPU {'<=' if cpu <= ref_cpu else '>'} glances, "
                  f"bytes {'<=' if bps <= ref_bps else '>'} glances")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TEXTUAL_FPS", "30")
    sys.exit(main())
