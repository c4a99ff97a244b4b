#!/usr/bin/env python3
"""Record what Textual writes to the terminal while an operator uses `heady demo` in tmux: the fixture
tests/fixtures/terminal/demo-writes.jsonl.gz that tests/test_terminal_replay.py replays through
ScreenDiff. Each line is [columns, rows, the write]. Re-record after a Textual upgrade:

    .venv/bin/python scripts/record/terminal.py
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests/fixtures/terminal/demo-writes.jsonl.gz"
# What the operator does: every screen, help, a row opened, the palette, a resize and back, then idle.
KEYS = ["2", "1", "?", "Escape", "3", "4", "5", "1", "Down", "Down", "Enter", "Escape", "Tab", "Down", "Enter",
        "Escape", "C-p", "Escape", "l", "Escape"]


def main() -> int:
    if shutil.which("tmux") is None:
        raise SystemExit("record/terminal: needs tmux")
    with tempfile.TemporaryDirectory(prefix="heady-record-") as tmp:
        work = Path(tmp)
        writes = work / "writes.jsonl"
        tmux = ["tmux", "-L", f"heady-record-{uuid.uuid4().hex[:8]}"]
        env = {"TERM": "xterm-256color", "PYTHONPATH": str(ROOT / "scripts/record"),
               "TEXTUAL_DRIVER": "terminal_driver:RecordingDriver", "HEADY_RECORD_WRITES": str(writes),
               "XDG_CONFIG_HOME": str(work / "xdg-config"), "XDG_DATA_HOME": str(work / "xdg-data")}
        command = f"cd {ROOT} && {sys.executable} -m heady_tui demo --data-dir {work / 'demo'}"
        try:
            subprocess.run([*tmux, "new-session", "-d", "-s", "rec", "-x", "160", "-y", "50",
                            *[arg for key, value in env.items() for arg in ("-e", f"{key}={value}")], command], check=True)
            time.sleep(12)
            for key in KEYS:
                subprocess.run([*tmux, "send-keys", "-t", "rec", key], check=True)
                time.sleep(1.5)
            subprocess.run([*tmux, "resize-window", "-t", "rec", "-x", "120", "-y", "40"], check=True)
            time.sleep(3)
            subprocess.run([*tmux, "resize-window", "-t", "rec", "-x", "160", "-y", "50"], check=True)
            time.sleep(20)
            subprocess.run([*tmux, "send-keys", "-t", "rec", "q"], check=True)
            time.sleep(2)
        finally:
            subprocess.run([*tmux, "kill-server"], capture_output=True)
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_bytes(gzip.compress(writes.read_bytes(), 9, mtime=0))
    print(f"wrote {FIXTURE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
