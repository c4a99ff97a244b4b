"""End to end in a real terminal: `heady demo --scenario queue-overflow` inside tmux, the consent
dialog answered with one key press, then `heady audit log --json` shows the grant."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HEADY = [sys.executable, "-m", "heady_tui"]
WAIT_S = 90.0

CONFIG = """
[detector]
evaluation_interval_s = 0.5
for_seconds = 1.0
clear_seconds = 1.0
keep_firing_seconds = 1.0

[ui]
refresh_hz = 8
"""

pytestmark = pytest.mark.slow


class Tmux:
    """One tmux server on its own socket, so the test never touches the user's sessions."""

    def __init__(self) -> None:
        self.socket = f"heady-test-{uuid.uuid4().hex[:8]}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=check, timeout=30)

    def screen(self, styles: bool = False) -> str:
        return self.run("capture-pane", "-p", *(["-e"] if styles else []), "-t", "heady", check=False).stdout

    def alive(self) -> bool:
        return self.run("has-session", "-t", "heady", check=False).returncode == 0

    def wait_for(self, text: str, timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.25)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{self.screen()}")

    def kill(self) -> None:
        self.run("kill-server", check=False)


def test_demo_in_tmux_asks_for_consent_and_the_answer_lands_in_the_audit_log(tmp_path: Path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/test.sh installs it)")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    data = tmp_path / "data"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"), "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
           "TERM": "xterm-256color"}
    command = " ".join(
        [*HEADY, "--config", str(config), "--data-dir", str(data), "demo", "--scenario", "queue-overflow", "--speed", "4"]
    )
    tmux = Tmux()
    try:
        tmux.run("new-session", "-d", "-s", "heady", "-x", "120", "-y", "40", "-c", str(Path.cwd()),
                 *[arg for key, value in env.items() if key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "TERM")
                   for arg in ("-e", f"{key}={value}")], command)
        tmux.wait_for("SIMULATED")
        tmux.wait_for("Permission to rebalance the fleet?")
        time.sleep(1.0)  # past the dialog's input guard (a key typed as it opens is not an answer)
        tmux.run("send-keys", "-t", "heady", "o")
        tmux.wait_for("rebalance.started")
        tmux.run("send-keys", "-t", "heady", "q")
        deadline = time.monotonic() + 30
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not tmux.alive(), "heady did not exit on q"
    finally:
        tmux.kill()
    log = subprocess.run([*HEADY, "--config", str(config), "--data-dir", str(data), "audit", "log", "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert log.returncode == 0, log.stderr
    entries = [json.loads(line) for line in log.stdout.splitlines()]
    grants = [e for e in entries if e["action"] == "consent.grant"]
    assert [g["details"]["scope"] for g in grants] == ["single"]
    assert any(e["action"].startswith("rebalance") for e in entries)


# The target is 10 KB/s; writing only the changed cells keeps the calm demo near 1 KB/s (9 KB/s
# with whole changed lines), so this bound also fails if the console goes back to line updates.
IDLE_TARGET_BYTES_PER_S = 3_000
IDLE_MEASURE_S = 20.0


def test_an_unattended_calm_demo_writes_less_than_the_idle_target_to_the_terminal(tmp_path: Path):
    """Bytes the console writes to a 160x50 terminal while nobody types, counted by tmux pipe-pane."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/test.sh installs it)")
    written = tmp_path / "terminal.bytes"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg-config"), "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
           "TERM": "xterm-256color"}
    command = " ".join([*HEADY, "--data-dir", str(tmp_path / "data"), "demo"])
    tmux = Tmux()
    try:
        tmux.run("new-session", "-d", "-s", "heady", "-x", "160", "-y", "50", "-c", str(Path.cwd()),
                 *[arg for key, value in env.items() for arg in ("-e", f"{key}={value}")], command)
        tmux.wait_for("4/4 online")
        time.sleep(5.0)  # the first paints of a starting fleet are not what is measured
        tmux.run("pipe-pane", "-t", "heady", "-o", f"cat >> {written}")
        started = time.monotonic()
        time.sleep(IDLE_MEASURE_S)
        tmux.run("pipe-pane", "-t", "heady")
        elapsed = time.monotonic() - started
        assert tmux.alive(), "heady exited while idle"
    finally:
        tmux.kill()
    rate = written.stat().st_size / elapsed
    assert rate < IDLE_TARGET_BYTES_PER_S, f"{rate:.0f} bytes/s written while idle"


SAMPLE_CONSOLE = Path(__file__).parent / "tty_console.py"
IDLE_REPAINT_S = 4.0  # an unattended console repaints at most every 3 s
REPAINT_WAIT_S = 15.0  # for the repaint after a key press (a fraction of a second on an idle machine)


@contextmanager
def sample_console(tmp_path: Path, steps: int) -> Iterator[Tmux]:
    """tests/tty_console.py in tmux at 120x40: the sample fleet, changing `steps` times, then still."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/test.sh installs it)")
    tmux = Tmux()
    try:
        tmux.run("new-session", "-d", "-s", "heady", "-x", "120", "-y", "40", "-e", "TERM=xterm-256color",
                 # COLUMNS/LINES from the environment (80x24 under pytest) would outrank the pane's size
                 " ".join(["env", "-u", "COLUMNS", "-u", "LINES", sys.executable, str(SAMPLE_CONSOLE), str(tmp_path), str(steps)]))
        tmux.wait_for("Nodes (")
        yield tmux
    finally:
        tmux.kill()


def settled_screen(tmux: Tmux, tmp_path: Path) -> str:
    """The screen (with styles) once the fleet has stopped changing and the screen has stayed the
    same for longer than an unattended console waits between repaints."""
    deadline = time.monotonic() + WAIT_S
    while not (tmp_path / "settled").exists():
        assert time.monotonic() < deadline, "the sample fleet never settled"
        time.sleep(0.2)
    screen, since = tmux.screen(styles=True), time.monotonic()
    while time.monotonic() - since < IDLE_REPAINT_S:
        assert time.monotonic() < deadline, "the screen never stopped changing"
        time.sleep(0.25)
        now = tmux.screen(styles=True)
        if now != screen:
            screen, since = now, time.monotonic()
    return screen


def screen_after(tmux: Tmux, wanted: Callable[[str], bool], styles: bool = False) -> str:
    """The screen once `wanted` holds for it, or the last one seen after REPAINT_WAIT_S."""
    deadline = time.monotonic() + REPAINT_WAIT_S
    while True:
        screen = tmux.screen(styles=styles)
        if wanted(screen) or time.monotonic() > deadline:
            return screen
        time.sleep(0.25)


def test_only_changed_cells_are_written_and_the_terminal_shows_what_a_full_repaint_shows(tmp_path: Path):
    with sample_console(tmp_path, steps=12) as tmux:
        before = tmux.screen(styles=True)
        changed = settled_screen(tmux, tmp_path)
        tmux.run("send-keys", "-t", "heady", "C-l")
        time.sleep(1.0)
        repainted = screen_after(tmux, lambda screen: screen == changed, styles=True)
    assert changed != before, "the fleet's changes never reached the screen"
    assert changed == repainted


def test_ctrl_l_paints_over_what_something_else_wrote_on_the_terminal(tmp_path: Path):
    with sample_console(tmp_path, steps=0) as tmux:
        settled_screen(tmux, tmp_path)
        tty = tmux.run("display-message", "-p", "-t", "heady", "#{pane_tty}").stdout.strip()
        with open(tty, "w", encoding="utf-8") as terminal:  # what a `wall` message does to an SSH session
            terminal.write("\x1b[2;10HSCRIBBLE\x1b[40;60HSCRIBBLE")
        time.sleep(IDLE_REPAINT_S)
        assert tmux.screen().count("SCRIBBLE") == 2  # nothing changed there, so nothing was written there
        tmux.run("send-keys", "-t", "heady", "C-l")
        screen = screen_after(tmux, lambda screen: "SCRIBBLE" not in screen)
        assert "SCRIBBLE" not in screen, screen
