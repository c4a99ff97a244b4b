"""`heady audit anchor --export` and `heady audit verify --against`, as child processes."""

from __future__ import annotations

import os
import sqlite3
import stat
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
    return run


def test_anchor_export_prints_the_verified_head(heady):
    heady("permissions", "grant", "--scope", "single")
    entries = heady("audit", "log", "--json").stdout.splitlines()  # the grant and the operator's entry
    out = heady("audit", "anchor", "--export")
    count, digest = out.stdout.strip().split(":")
    assert out.returncode == 0 and count == str(len(entries)) == "2" and len(digest) == 64


def test_verify_against_an_exported_head_passes_while_the_chain_grows(heady):
    heady("permissions", "grant", "--scope", "single")
    exported = heady("audit", "anchor", "--export").stdout.strip()
    heady("notify-deploy")
    out = heady("audit", "verify", "--against", exported)
    assert out.returncode == 0 and "contains the exported head" in out.stdout


def test_verify_against_fails_when_the_history_was_rebuilt(heady):
    heady("permissions", "grant", "--scope", "single", "--reason", "first")
    exported = heady("audit", "anchor", "--export").stdout.strip()
    con = sqlite3.connect(heady.db)
    con.execute("DELETE FROM audit")
    con.execute("DELETE FROM grants")
    con.execute("DELETE FROM engine_kv")
    con.commit()
    con.close()
    heady.db.with_name("heady.db.anchor").unlink()
    heady("permissions", "grant", "--scope", "single", "--reason", "rewritten")
    assert heady("audit", "verify").returncode == 0  # consistent on its own...
    out = heady("audit", "verify", "--against", exported)
    assert out.returncode == 1 and "exported head" in out.stderr  # ...but not with what was kept


def test_anchor_export_refuses_a_chain_that_does_not_verify(heady):
    heady("permissions", "grant", "--scope", "single")
    heady.db.with_name("heady.db.anchor").unlink()
    out = heady("audit", "anchor", "--export")
    assert out.returncode == 1 and out.stdout == "" and "nothing exported" in out.stderr


def test_verify_against_a_malformed_head_is_a_usage_error(heady):
    out = heady("audit", "verify", "--against", "twelve")
    assert out.returncode == 2 and "COUNT:HASH" in out.stderr


def test_the_database_and_anchor_are_private_to_the_operator(heady):
    heady("permissions", "grant", "--scope", "single")
    data = heady.db.parent
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for path in data.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
