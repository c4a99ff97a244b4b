"""`heady demo --scenario node-loss --headless`: the lost node's critical agent.notice triggers a healing cycle, and
its loss opens one critical weak point (one `healing.critical`, the event a webhook alert is made from)."""

from __future__ import annotations

import json
import subprocess
import sys

FAST_CONFIG = """
[detector]
evaluation_interval_s = 0.25

[healing]
light_interval_s = 0.5
full_interval_s = 2
group_wait_s = 0.5
"""


def test_node_loss_demo_runs_a_cycle_triggered_by_the_critical_notice_and_alerts_once_on_the_lost_node(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(FAST_CONFIG)
    done = subprocess.run(
        [sys.executable, "-m", "heady_tui", "demo", "--scenario", "node-loss", "--headless", "--for", "12",
         "--nodes", "2", "--speed", "4", "--config", str(config), "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    cycles = [e["kind"] for e in events if e["event"] == "healing.cycle"]
    assert any(kind.startswith("triggered:") and "critical notice from sim-2" in kind for kind in cycles), cycles
    critical = [e for e in events if e["event"] == "healing.critical"]
    assert [(e["subject"], e["strategy"]) for e in critical] == [("sim-2", "revive_agent")]
    revive = [e for e in events if e["event"] == "task.created" and e["subject"] == "sim-2"]
    assert [e["priority"] for e in revive] == ["critical"]
