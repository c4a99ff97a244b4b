"""The brain's decisions reach `heady demo --headless` stdout as JSON lines, and nothing else does."""

from __future__ import annotations

import json
import subprocess
import sys

FAST_CONFIG = """
[detector]
evaluation_interval_s = 0.25
for_seconds = 1
clear_seconds = 2
keep_firing_seconds = 1

[healing]
light_interval_s = 1
full_interval_s = 3
group_wait_s = 1
"""


def test_queue_overflow_demo_prints_brain_events_as_json_lines_only(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(FAST_CONFIG)
    done = subprocess.run(
        [sys.executable, "-m", "heady_tui", "demo", "--scenario", "queue-overflow", "--headless", "--for", "15",
         "--nodes", "3", "--speed", "8", "--config", str(config), "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    events = [json.loads(line) for line in lines]  # every stdout line is one JSON object
    assert all(set(e) >= {"ts", "event"} for e in events)
    names = [e["event"] for e in events]
    assert {"equilibrium.level", "consent.requested", "healing.cycle"} <= set(names)
    critical = next(e for e in events if e["event"] == "equilibrium.level" and e["level"] == "critical")
    assert critical["metrics"]["task_queue_depth"] > 1000
    asked = next(e for e in events if e["event"] == "consent.requested")
    assert asked["priority"] == "critical" and asked["actions"]
    assert not any(n.startswith("rebalance.") for n in names)  # nobody granted consent
