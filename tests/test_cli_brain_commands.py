"""`heady permissions`, `heady audit`, `heady notify-deploy`, and bad config through `heady run`, as child processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest


@pytest.fixture
def heady(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("HEADY_CONFIG", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "heady_tui", *args], env=env, capture_output=True, text=True, timeout=60)

    run.db = tmp_path / "data" / "heady" / "heady.db"  # type: ignore[attr-defined]
    run.tmp = tmp_path  # type: ignore[attr-defined]
    return run


def test_grant_then_list_as_json_shows_the_grant(heady):
    assert heady("permissions", "grant", "--scope", "session", "--reason", "maintenance").returncode == 0
    grants = json.loads(heady("permissions", "list", "--json").stdout)
    assert [(g["scope"], g["status"], g["reason"]) for g in grants] == [("session", "active", "maintenance")]
    assert "@" in grants[0]["grantor"]


def test_revoked_grant_is_listed_only_with_all(heady):
    heady("permissions", "grant", "--scope", "persistent")
    gid = json.loads(heady("permissions", "list", "--json").stdout)[0]["id"]
    assert heady("permissions", "revoke", gid).returncode == 0
    assert json.loads(heady("permissions", "list", "--json").stdout) == []
    assert json.loads(heady("permissions", "list", "--json", "--all").stdout)[0]["status"] == "revoked"


def test_revoke_of_an_unknown_id_is_a_one_line_error(heady):
    out = heady("permissions", "revoke", "g-nope")
    assert out.returncode == 1 and out.stderr.strip() == "heady: error: no grant with id 'g-nope'"


def test_grant_with_an_unknown_scope_is_refused(heady):
    out = heady("permissions", "grant", "--scope", "forever")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_audit_log_lists_every_decision_in_order(heady):
    heady("permissions", "grant", "--scope", "single")
    heady("notify-deploy")
    entries = [json.loads(line) for line in heady("audit", "log", "--json").stdout.splitlines()]
    # Each change, then the operator action that asked for it (heady_tui.operator).
    assert [e["action"] for e in entries] == ["consent.grant", "operator.grant", "deploy.notice", "operator.notify_deploy"]
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in zip(entries, entries[1:]))


def test_audit_verify_passes_on_an_intact_chain(heady):
    heady("permissions", "grant", "--scope", "single")
    out = heady("audit", "verify")
    assert out.returncode == 0 and out.stdout.startswith("ok: 2 entries")  # the grant and the operator action


def test_audit_verify_names_the_first_entry_edited_by_hand(heady):
    for _ in range(3):
        heady("permissions", "grant", "--scope", "single")
    con = sqlite3.connect(heady.db)
    con.execute("UPDATE audit SET entry = replace(entry, 'single', 'persistent') WHERE seq = 2")
    con.commit()
    con.close()
    out = heady("audit", "verify")
    assert out.returncode == 1 and "entry 2:" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert heady("audit", "log", "--json").stdout.count("\n") == 6  # nothing lost: 3 grants, 3 operator actions


def test_a_corrupt_database_is_a_one_line_error(heady):
    heady.db.parent.mkdir(parents=True)
    heady.db.write_bytes(b"this is not sqlite" * 100)
    out = heady("audit", "verify")
    assert out.returncode == 1 and "corrupt" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_notify_deploy_for_an_unknown_node_is_refused(heady):
    cfg = heady.tmp / "config" / "heady" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[[nodes]]\nname = "build-1"\nurl = "ws://127.0.0.1:9/ws"\n')
    out = heady("notify-deploy", "--node", "nope")
    assert out.returncode == 1 and "no node named 'nope'" in out.stderr


def test_threshold_above_critical_is_refused_by_heady_run(heady):
    cfg = heady.tmp / "bad.toml"
    cfg.write_text("[detector.task_queue_depth]\nthreshold = 2000\ncritical = 1000\n")
    out = heady("run", "--headless", "--for", "1", "--config", str(cfg))
    assert out.returncode == 2 and "critical (1000.0) must not be below threshold (2000.0)" in out.stderr
    assert out.stdout == ""
