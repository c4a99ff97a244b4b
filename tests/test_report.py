"""Session reports over a real SQLite store filled with real protocol frames."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from heady_tui.config import Config, ConsentConfig, CostConfig, Paths
from heady_agent.protocol import Event, Metrics
from heady_tui.engine.consent import new_denial, new_grant
from heady_tui.engine.cost import PricingTable
from heady_tui.engine.detector import LevelChange, MetricLevelChange
from heady_tui.engine.policies import PolicyState
from heady_tui.records import Records
from heady_tui.report import ReportData, ReportError, export_report, gather_report, parse_time, render
from heady_tui.store import Store
from report_kit import call, event, fill, metrics, open_in_chromium
from reports_httpkit import FakeService, Recorded, Reply

T0 = datetime(2026, 11, 20, 23, 50, tzinfo=timezone.utc).timestamp()  # the range crosses midnight UTC
SINCE, UNTIL = T0, T0 + 1200


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "heady.db", pricing=PricingTable.load(CostConfig()))
    yield db
    await db.close()


def _paths(tmp_path: Path) -> Paths:
    return Paths(config_file=tmp_path / "config.toml", data_dir=tmp_path)


async def _two_nodes(store: Store, *, simulated: bool = False) -> None:
    """build-1: a sonnet session (started before the range) and one unknown model; build-2: gpt-5."""
    b1: list[Metrics | Event] = [event(1, T0 - 600, "session.started", "s1", {"source": "claude-code", "project": "api", "model": "claude-sonnet-4-5"})]
    seq = 1
    for i in range(120):  # a metrics sample every 10 s over the 20 min range; the queue climbs
        seq += 1
        b1.append(metrics(seq, T0 + i * 10, load1=3.2, queue=600 + i * 5))
    b1 += [
        event(seq + 1, T0 + 60, "llm.call", "s1", call("claude-sonnet-4-5", input_tokens=150_000, output_tokens=200_000)),  # $3.45
        event(seq + 2, T0 + 700, "llm.call", "s1", call("claude-sonnet-4-5", cache_read=100_000)),  # $0.03, next UTC day
        event(seq + 3, T0 + 710, "session.state", "s1", {"state": "idle", "reason": "waiting"}),
        event(seq + 4, T0 + 720, "session.started", "s9", {"source": "managed", "project": None, "model": "mystery-1"}),
        event(seq + 5, T0 + 730, "llm.call", "s9", call("mystery-1", input_tokens=5000)),
    ]
    await fill(store, "build-1", b1, simulated=simulated)
    b2: list[Metrics | Event] = [event(1, T0 + 5, "session.started", "c1", {"source": "codex", "project": "web", "model": "gpt-5"})]
    for i in range(120):
        b2.append(metrics(i + 2, T0 + i * 10, load1=0.4, queue=10))
    b2 += [
        event(200, T0 + 100, "llm.call", "c1", call("gpt-5", input_tokens=400_000, output_tokens=50_000)),  # $1.00
        event(201, T0 + 900, "session.ended", "c1", {"exit_code": 0, "reason": "done"}),
    ]
    await fill(store, "build-2", b2, simulated=simulated)


async def _report(store: Store, tmp_path: Path) -> ReportData:
    return await gather_report(store, Config(), _paths(tmp_path), since=SINCE, until=UNTIL, now=UNTIL + 5)


async def test_json_report_validates_against_the_contract(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    text = render(await _report(store, tmp_path), "json")
    data = json.loads(text)
    assert ReportData.model_validate(data)
    for key in ("generated_at", "range", "simulated", "nodes", "sessions", "costs", "equilibrium", "consents", "rebalances", "healing", "policies", "audit"):
        assert key in data
    assert data["range"] == {"since": "2026-11-20T23:50:00.000Z", "until": "2026-11-21T00:10:00.000Z"}


async def test_costs_are_tokens_times_prices_by_model_node_project_and_day(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    costs = (await _report(store, tmp_path)).costs
    assert costs.total_usd == pytest.approx(4.48)
    assert costs.by_model == pytest.approx({"claude-sonnet-4-5": 3.48, "gpt-5": 1.00, "mystery-1": 0.0})
    assert costs.by_node == pytest.approx({"build-1": 3.48, "build-2": 1.00})
    assert costs.by_project == pytest.approx({"api": 3.48, "web": 1.00, "(none)": 0.0})
    assert costs.by_day == pytest.approx({"2026-11-20": 4.45, "2026-11-21": 0.03})


async def test_an_unknown_model_costs_nothing_and_is_listed(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    assert (await _report(store, tmp_path)).costs.unknown_models == ["mystery-1"]


async def test_sessions_carry_what_they_started_with_even_before_the_range(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    sessions = {s.id: s for s in (await _report(store, tmp_path)).sessions}
    s1 = sessions["s1"]
    assert (s1.node, s1.source, s1.project, s1.state, s1.calls) == ("build-1", "claude-code", "api", "idle", 2)
    assert (s1.input_tokens, s1.output_tokens, s1.cache_read_tokens) == (150_000, 200_000, 100_000)  # cache reads are not input
    assert (sessions["c1"].state, sessions["c1"].reason) == ("completed", "done")


async def test_nodes_list_journal_last_seq_events_and_gaps(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    nodes = {n.id: n for n in (await _report(store, tmp_path)).nodes}
    assert (nodes["build-1"].hostname, nodes["build-1"].journal, nodes["build-1"].last_seq, nodes["build-1"].gaps) == ("build-1.lan", "j1", 126, 0)
    assert nodes["build-2"].events == 3
    assert nodes["build-2"].gaps == 200 - 122  # seqs 122..199 were never stored


async def test_equilibrium_series_follows_the_stored_metrics(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    series = (await _report(store, tmp_path)).series
    queue = series.equilibrium["task_queue_depth"]
    assert queue[0][1] < queue[-1][1]
    assert max(v for _, v in queue) == pytest.approx(600 + 119 * 5 + 10, rel=0.02)
    assert series.equilibrium["node_load_variance"][-1][1] == pytest.approx(0.7777, rel=0.01)
    assert series.equilibrium["error_rate"] == []  # fewer calls than detector.min_calls
    assert set(series.node_load) == {"build-1", "build-2"}
    assert series.cost[-1][1] == pytest.approx(4.48)


async def test_simulated_fleet_is_said_on_the_first_line_of_every_format(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store, simulated=True)
    report = await _report(store, tmp_path)
    assert render(report, "json").splitlines()[0] == '{"simulated": true,'
    assert "SIMULATED FLEET" in render(report, "md").splitlines()[0]
    assert "SIMULATED FLEET" in render(report, "html").splitlines()[0]


async def test_a_real_fleet_report_does_not_say_simulated(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    report = await _report(store, tmp_path)
    assert render(report, "json").splitlines()[0] == '{"simulated": false,'
    assert "SIMULATED" not in render(report, "md") and "SIMULATED" not in render(report, "html")


async def test_markdown_shows_the_same_totals_as_the_json(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    report = await _report(store, tmp_path)
    md = render(report, "md")
    assert "**Total cost: $4.48**" in md
    assert "| claude-sonnet-4-5 | $3.48 |" in md
    assert "| 2026-11-21 | $0.03 |" in md
    assert "| s1 | build-1 | claude-code | api | claude-sonnet-4-5 | idle (waiting) | 2 | 150,000 | 200,000 | 0 | 100,000 | $3.48 |" in md


async def test_html_is_self_contained(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    page = render(await _report(store, tmp_path), "html")
    assert not re.search(r"<(script|img|link|iframe|object)\b", page, re.I)
    assert not re.search(r"url\(", page)
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}  # SVG namespace only


async def test_html_escapes_what_sessions_report_about_themselves(store: Store, tmp_path: Path) -> None:
    hostile = "<script>alert(1)</script>"
    frames = [
        event(1, T0 + 1, "session.started", "s<1>", {"source": "claude-code", "project": hostile, "model": "claude-haiku-4-5"}),
        event(2, T0 + 2, "llm.call", "s<1>", call("claude-haiku-4-5", input_tokens=1000)),
    ]
    await fill(store, "node&1", frames)
    page = render(await _report(store, tmp_path), "html")
    assert hostile not in page and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "s&lt;1&gt;" in page and "node&amp;1" in page


async def test_html_opens_in_headless_chromium_with_every_section(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store, simulated=True)
    page = tmp_path / "report.html"
    page.write_text(render(await _report(store, tmp_path), "html"))
    dom, log = open_in_chromium(page, tmp_path / "profile")
    for anchor in ("simulated", "total-cost", "charts", "nodes", "sessions", "cost-by-model", "cost-by-day", "timeline", "rebalance-runs", "healing-cycles", "policy-actions", "consents", "audit"):
        assert f'id="{anchor}"' in dom, anchor
    assert dom.count("<figure") == 6
    assert dom.count("<svg") == 4  # error rate and P95 have fewer calls than detector.min_calls: "no data"
    assert "$4.48" in dom
    assert "Uncaught" not in log and "CONSOLE" not in log


async def _records(store: Store, tmp_path: Path) -> Records:
    return await Records.open(store, _paths(tmp_path).audit_anchor)


async def _engine_history(records: Records) -> None:
    """One of everything the engines record: a level change, a grant and a denial, a rebalance run
    with a step, a healing cycle and a policy action, all inside the report's range."""
    config = ConsentConfig()
    await records.level_changes_made(
        LevelChange(T0 + 100, "critical", "degraded", {"task_queue_depth": 1210.0, "error_rate": None}),
        [MetricLevelChange(T0 + 100, "task_queue_depth", "critical", "degraded", 1210.0)], {})
    await records.add_grant(new_grant("single", now=T0 + 130, config=config, reason="queue overflow on build-1", by="ops@host"), actor="ops@host", now=T0 + 130)
    await records.add_denial(new_denial("fp1", now=T0 + 120, config=config, reason="not now", by="dev@laptop"), None)
    plan = {"priority": "critical", "actions": [{"note": "move 200 items build-1 -> build-2"}]}
    await records.run_started("run-1", None, "critical", T0 + 140, plan, "heady")
    await records.journal_change("run-1", 1, "build-1", "queue.move", None, {"count": 200})
    step = {"action": "queue.move", "node": "build-1", "target": None, "ok": True, "error": None}
    await records.change_applied("run-1", 1, True, None, {}, step, now=T0 + 142, actor="heady")
    await records.run_stopped("run-1", now=T0 + 200, reason="balanced", restored=True, time_to_restore_s=60, reverted=0, duration_s=60, actor="heady")
    cycle = {"id": "hc-1", "at": T0 + 300, "kind": "light", "weak_points": [{"id": "wp-1"}], "tasks_created": ["t-1", "t-2"], "summary": "1 weak point"}
    await records.save_cycle("hc-1", T0 + 300, "light", cycle)
    state = PolicyState(node="build-1", session="s1", policy="resume_on_idle")
    await records.policy_action(at=T0 + 400, policy="resume_on_idle", node="build-1", session="s1", action="session.prompt",
                                attempt=1, outcome="ok", state=state, actor="heady")  # fmt: skip


async def test_engine_records_fill_every_section(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    await _engine_history(await _records(store, tmp_path))
    data = json.loads(render(await _report(store, tmp_path), "json"))
    assert data["equilibrium"] == [
        {"at": "2026-11-20T23:51:40.000Z", "metric": "task_queue_depth", "level": "critical", "value": 1210.0, "previous": "degraded",
         "metrics": {}},
        {"at": "2026-11-20T23:51:40.000Z", "metric": "overall", "level": "critical", "value": None, "previous": "degraded",
         "metrics": {"task_queue_depth": 1210.0, "error_rate": None}},
    ]  # fmt: skip
    assert [(c["decision"], c["scope"], c["grantor"]) for c in data["consents"]] == [("denied", None, "dev@laptop"), ("granted", "single", "ops@host")]
    (run,) = data["rebalances"]
    assert (run["priority"], run["reason_stopped"], run["actions"], run["stopped"]) == ("critical", "balanced", 1, "2026-11-20T23:53:20.000Z")
    assert data["healing"] == [{"cycle": "hc-1", "at": "2026-11-20T23:55:00.000Z", "kind": "light", "weak_points": 1, "tasks": 2, "summary": "1 weak point"}]
    assert data["policies"] == [{"at": "2026-11-20T23:56:40.000Z", "policy": "resume_on_idle", "session": "s1", "action": "session.prompt", "outcome": "ok", "node": "build-1"}]


async def test_the_timeline_orders_every_kind_of_intervention(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    await _engine_history(await _records(store, tmp_path))
    md = render(await _report(store, tmp_path), "md")
    timeline = md.split("## Timeline")[1].split("## ")[0]
    kinds = [line.split(" | ")[1] for line in timeline.splitlines() if line.startswith("| 2026")]
    assert kinds == ["equilibrium", "equilibrium", "consent", "consent", "rebalance", "rebalance", "healing", "policy"]
    assert "task_queue_depth critical (was degraded): 1,210 |" in timeline
    assert "fleet critical (was degraded): task_queue_depth 1,210" in timeline


async def test_audit_head_and_verification_are_in_the_report(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    records = await _records(store, tmp_path)
    await records.audit(T0, "ops@host", "consent.grant", {"scope": "single"})
    head = (await records.verify_audit()).head
    summary = (await _report(store, tmp_path)).audit
    assert (summary.entries, summary.head, summary.verified) == (1, head.hash, True)


async def test_a_tampered_audit_chain_is_reported_as_failed(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    records = await _records(store, tmp_path)
    await records.audit(T0, "ops@host", "consent.grant", {"scope": "single"})
    await store.db.execute("UPDATE audit SET actor = 'mallory@host'")
    report = await _report(store, tmp_path)
    assert report.audit.verified is False
    assert "VERIFICATION FAILED" in render(report, "md")


def _openai_costs(request: Recorded) -> Reply:
    day = int(datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp())
    result = {"object": "organization.costs.result", "amount": {"value": 1.1, "currency": "usd"}, "line_item": "gpt-5, input", "project_id": None}
    bucket = {"object": "bucket", "start_time": day, "end_time": day + 86400, "results": [result]}
    return Reply(200, {"object": "page", "data": [bucket], "has_more": False, "next_page": None})


async def test_provider_costs_sit_beside_token_costs_per_day(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await _two_nodes(store)
    monkeypatch.setenv("HEADY_TEST_OPENAI_ADMIN", "sk-admin-test")
    with FakeService(_openai_costs) as openai:
        config = Config.model_validate({"cost": {"providers": {"openai_admin_key_env": "HEADY_TEST_OPENAI_ADMIN", "anthropic_admin_key_env": "HEADY_TEST_NO_KEY", "openai_base_url": openai.url}}})
        report = await gather_report(store, config, _paths(tmp_path), since=SINCE, until=UNTIL, now=UNTIL + 5, ask_providers=True)
    assert [(r.day, r.from_tokens_usd, r.from_provider_usd) for r in report.costs.reconciled] == [("2026-11-20", 4.45, 1.1), ("2026-11-21", 0.03, None)]
    assert report.costs.provider_errors == {"anthropic": "anthropic: $HEADY_TEST_NO_KEY is not set (cost.providers.anthropic_admin_key_env)"}
    md = render(report, "md")
    assert "| 2026-11-20 | $4.45 | $1.10 |" in md and "| 2026-11-21 | $0.03 | - |" in md
    assert "not available: anthropic: $HEADY_TEST_NO_KEY is not set" in md


async def test_without_provider_keys_the_report_asks_nobody(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    report = await gather_report(store, Config(), _paths(tmp_path), since=SINCE, until=UNTIL, now=UNTIL + 5, ask_providers=True)
    assert report.costs.reconciled == [] and report.costs.provider_errors == {}
    assert "from provider" not in render(report, "md")


async def test_export_report_writes_into_the_data_dir_reports_folder_by_default(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    path = await export_report(store, Config(), _paths(tmp_path), since=SINCE, until=UNTIL, now=UNTIL, fmt="md")
    assert path == tmp_path / "reports" / "heady-report-20261121-001000.md"
    assert "**Total cost: $4.48**" in path.read_text()


async def test_export_report_to_an_unwritable_place_is_a_one_line_error(store: Store, tmp_path: Path) -> None:
    await _two_nodes(store)
    target = tmp_path / "missing" / "r.json"
    with pytest.raises(ReportError, match=rf"^cannot write {re.escape(str(target))}: "):
        await export_report(store, Config(), _paths(tmp_path), since=SINCE, until=UNTIL, now=UNTIL, fmt="json", output=target)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("24h", 1_800_000_000 - 86400), ("90m", 1_800_000_000 - 5400), ("3600", 1_800_000_000 - 3600), ("2027-01-15T08:00:00Z", 1_800_000_000.0), ("2027-01-15T08:00", 1_800_000_000.0)],
)
def test_since_takes_a_duration_ago_or_an_iso_time(text: str, expected: float) -> None:
    assert parse_time(text, 1_800_000_000.0, option="--since") == expected


@pytest.mark.parametrize("text", ["yesterday", "-5h", "nanh", ""])
def test_a_bad_since_is_a_one_line_error(text: str) -> None:
    with pytest.raises(ReportError, match=r"^--since: "):
        parse_time(text, 1_800_000_000.0, option="--since")


async def test_waits_for_a_person_are_listed_with_their_durations(store: Store, tmp_path: Path) -> None:
    await fill(store, "build-1", [
        event(1, T0 - 60, "session.started", "s1", {"source": "claude-code", "project": "api", "model": "claude-sonnet-4-5"}),
        event(2, T0 + 100, "session.state", "s1", {"state": "waiting", "reason": "permission"}),
        event(3, T0 + 145, "session.state", "s1", {"state": "running", "reason": "claude-code PostToolUse"}),
        event(4, T0 + 900, "session.state", "s1", {"state": "waiting", "reason": "input\x1b[31m"}),
    ])  # fmt: skip
    report = await _report(store, tmp_path)
    waits = [(w.project, w.reason, w.began, w.ended, w.duration_s) for w in report.waits]
    assert waits == [
        ("api", "permission", "2026-11-20T23:51:40.000Z", "2026-11-20T23:52:25.000Z", 45.0),
        ("api", "input", "2026-11-21T00:05:00.000Z", None, 300.0),
    ]
    assert "| still waiting | 300 s |" in render(report, "md")
