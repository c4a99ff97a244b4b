"""Rebalancing KPIs from runs and consent requests stored in a real SQLite file, and `heady kpis`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from heady_tui.engine.consent import ConsentRequest
from heady_tui.config import Config, Paths
from heady_tui.engine.kpis import rebalance_kpis
from heady_tui.records import Records
from heady_tui.report import gather_report, render_markdown
from heady_tui.store import Store

PLAN = {"priority": "normal", "actions": []}


async def _records(tmp_path: Path) -> tuple[Store, Records]:
    store = await Store.open(tmp_path / "heady.db")
    return store, await Records.open(store, tmp_path / "heady.db.anchor")


async def _run(records: Records, run_id: str, started: float, restored: bool, restore_s: float | None, cpu: float = 50.0) -> None:
    await records.run_started(run_id, None, "normal", started, PLAN, "test")
    await records.run_stopped(run_id, now=started + 100, reason="done", restored=restored, time_to_restore_s=restore_s,
                              reverted=0, duration_s=100, actor="test", peak_cpu_percent=cpu)


async def _request(records: Records, rid: str, created: float, state: str) -> None:
    await records.save_request(ConsentRequest(rid, created, created + 60, "load", "fp", PLAN, state))


async def _kpis(tmp_path: Path) -> dict[str, float | None]:
    store, records = await _records(tmp_path)
    try:
        await _run(records, "r1", 1000, True, 40.0)
        await _run(records, "r2", 2000, True, 90.0, cpu=93.5)
        await _run(records, "r3", 3000, False, None)
        await _run(records, "r4", 4000, True, 10.0)
        for i, state in enumerate(("granted", "granted", "granted", "denied", "expired")):
            await _request(records, f"q{i}", 1000 + i, state)
        kpis = rebalance_kpis(await records.rebalances(0, 10_000), await records.requests(0, 10_000))
        return {k.name: k.value for k in kpis}
    finally:
        await store.close()


async def test_grant_rate_counts_granted_over_answered_requests_ignoring_expired(tmp_path):
    assert (await _kpis(tmp_path))["permission grant rate"] == 0.75


async def test_success_rate_counts_restored_over_finished_runs(tmp_path):
    assert (await _kpis(tmp_path))["rebalancing success rate"] == 0.75


async def test_restore_time_is_the_slowest_restore_in_range(tmp_path):
    assert (await _kpis(tmp_path))["equilibrium restore time"] == 90.0


async def test_cpu_during_runs_is_the_highest_peak_stored_with_any_run(tmp_path):
    assert (await _kpis(tmp_path))["CPU during runs"] == 93.5


async def test_activation_count_counts_every_run_started_in_range(tmp_path):
    assert (await _kpis(tmp_path))["activation count"] == 4


def test_kpis_with_no_runs_report_no_data_and_zero_activations():
    kpis = {k.name: k for k in rebalance_kpis([], [])}
    assert kpis["permission grant rate"].value is None and kpis["permission grant rate"].met is None
    assert kpis["activation count"].value == 0 and kpis["activation count"].met is True


def test_heady_kpis_json_lists_the_kpis_with_targets(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("HEADY_CONFIG", None)
    out = subprocess.run([sys.executable, "-m", "heady_tui", "kpis", "--since", "7d", "--json"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    targets = {k["name"]: k["target"] for k in json.loads(out.stdout)["kpis"]}
    assert targets["rebalancing success rate"] == 0.95 and targets["activation count"] == 0


def test_heady_kpis_with_a_bad_since_is_a_one_line_error(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    out = subprocess.run([sys.executable, "-m", "heady_tui", "kpis", "--since", "yesterday"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


async def test_the_markdown_report_shows_the_kpis_and_each_runs_restore_time(tmp_path):
    store, records = await _records(tmp_path)
    try:
        await _run(records, "r1", 1000, True, 40.0)
        paths = Paths(config_file=tmp_path / "none.toml", data_dir=tmp_path)
        report = await gather_report(store, Config(), paths, since=0, until=10_000, now=10_000)
    finally:
        await store.close()
    assert report.rebalances[0].time_to_restore_s == 40.0 and report.rebalances[0].restored is True
    text = render_markdown(report)
    assert "| rebalancing success rate | 100 % | &gt;= 95 % | yes |" in text  # ">" escaped: Markdown cells are literal
