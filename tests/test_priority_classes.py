"""Session priority classes: `[[priority.rules]]` decide a session's class where it enters the ledger
(first match wins, default normal), the store keeps it, an operator's choice from the session screen
overrides the rules, is audited and persists; the class is a column in the tables and the report."""

from __future__ import annotations

from pathlib import Path

import pytest
from uikit import fixed_console, wait_for_audit, wait_until

from heady_agent.config import ConfigError
from heady_agent.protocol import Event, SessionInfo
from heady_tui.config import Config, Paths, PriorityRule, load_config
from heady_tui.ledger import PriorityRules
from heady_tui.operator import ConsoleOperator, OperatorError
from heady_tui.report import gather_report, render
from heady_tui.store import Store
from heady_tui.ui.modals.confirm import ConfirmModal
from heady_tui.ui.widgets.table import KeyedTable

T0 = 1_800_000_000.0


def rules(*raw: dict[str, str]) -> PriorityRules:
    return PriorityRules([PriorityRule.model_validate(r) for r in raw])


def started(seq: int, session: str, *, source: str = "claude-code", project: str | None = None, managed: str | None = None) -> Event:
    data = {"source": source, "project": project, "cwd": None, "pid": 100 + seq, "model": None, "title": None, "managed": managed}
    return Event(journal="j1", seq=seq, ts=T0 + seq, kind="session.started", session=session, data=data)


def test_a_session_no_rule_matches_is_normal():
    assert rules({"priority_class": "high", "project": "release"}).class_of("n1", source="codex", project="web", managed=None) == "normal"


def test_the_first_matching_rule_wins():
    r = rules({"priority_class": "background", "source": "claude-*"}, {"priority_class": "high", "project": "release"})
    assert r.class_of("n1", source="claude-code", project="release", managed=None) == "background"
    assert r.class_of("n1", source="codex", project="release", managed=None) == "high"


def test_a_rule_matches_only_when_every_key_it_gives_matches():
    r = rules({"priority_class": "high", "source": "managed", "managed": "deploy-*"})
    assert r.class_of("n1", source="managed", project=None, managed="deploy-eu") == "high"
    assert r.class_of("n1", source="managed", project=None, managed="nightly") == "normal"
    assert r.class_of("n1", source="codex", project=None, managed=None) == "normal"


def test_a_label_rule_matches_the_labels_the_node_announced():
    r = rules({"priority_class": "background", "label": "tier=batch*"})
    r.set_labels("n1", {"tier": "batch-2"})
    r.set_labels("n2", {"tier": "web"})
    assert r.class_of("n1", source="codex", project=None, managed=None) == "background"
    assert r.class_of("n2", source="codex", project=None, managed=None) == "normal"
    assert r.class_of("n3", source="codex", project=None, managed=None) == "normal"


@pytest.mark.parametrize(("toml", "message"), [
    ('[[priority.rules]]\npriority_class = "high"\n', "at least one of project, source, managed, label"),
    ('[[priority.rules]]\npriority_class = "urgent"\nproject = "x"\n', "priority_class"),
    ('[[priority.rules]]\npriority_class = "high"\nlabel = "tier"\n', "label"),
    ('[priority]\nloaded_utilisation = 0.5\nunloaded_utilisation = 0.9\n', "must not be above loaded_utilisation"),
])
def test_a_bad_priority_section_is_one_line_naming_the_problem(tmp_path: Path, toml: str, message: str):
    (tmp_path / "config.toml").write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(Paths(tmp_path / "config.toml", tmp_path))
    assert message in str(caught.value) and "\n" not in str(caught.value)


async def test_the_store_gives_each_session_its_class_as_it_enters_the_ledger_and_keeps_it(tmp_path: Path):
    classes = rules({"priority_class": "high", "project": "release"}, {"priority_class": "background", "managed": "nightly"})
    store = await Store.open(tmp_path / "heady.db", priority=classes)
    try:
        await store.ingest("n1", "j1", [started(1, "s1", project="release"), started(2, "s2", source="managed", managed="nightly"),
                                        started(3, "s3", project="web")])
    finally:
        await store.close()
    reopened = await Store.open(tmp_path / "heady.db")  # no rules: what was stored is read back
    try:
        assert {s.id: s.priority for s in await reopened.sessions()} == {"s1": "high", "s2": "background", "s3": "normal"}
    finally:
        await reopened.close()


async def test_an_operator_class_outlasts_the_rules_at_the_next_snapshot(tmp_path: Path):
    store = await Store.open(tmp_path / "heady.db", priority=rules({"priority_class": "background", "project": "web"}))
    try:
        await store.ingest("n1", "j1", [started(1, "s1", project="web")])
        assert (await store.set_priority("n1", "s1", "high")).priority_by == "operator"
        await store.apply_sessions("n1", [SessionInfo(id="s1", source="claude-code", project="web")], T0 + 10)
        rec = await store.session("n1", "s1")
        assert (rec.priority, rec.priority_by) == ("high", "operator")
    finally:
        await store.close()


async def test_c_on_the_session_screen_sets_the_class_after_confirming_and_audits_it(tmp_path: Path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        sessions = app.screen.query_one("#sessions", KeyedTable)
        sessions.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "session", "the session screen")
        node, sid = app.screen.node_id, app.screen.session_id
        await pilot.press("c")
        answer = await wait_until(pilot, lambda: app.screen.query("#answer") and app.screen.query_one("#answer"), "the dialog")
        assert answer.value == "normal"
        answer.value = "background"
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the confirmation")
        await pilot.press("y")
        await wait_until(pilot, lambda: app.supervisor.fleet.sessions[(node, sid)].priority == "background", "the class to change")
        stored = await app.supervisor.store.session(node, sid)
        assert (stored.priority, stored.priority_by) == ("background", "operator")
        entries = await wait_for_audit(pilot, app.supervisor.brain, "operator.session.priority", "the audit entry")
        assert [(e.details["target"], e.details["args"], e.details["result"]) for e in entries] == [
            (f"{node}/{sid}", {"priority": "background"}, "ok")]
        await pilot.press("escape")
        await wait_until(pilot, lambda: getattr(app.screen, "VIEW", None) == "overview", "the overview")
        table = app.screen.query_one("#sessions", KeyedTable)
        await wait_until(pilot, lambda: str(table.cell(f"{node}\x1f{sid}", "priority")) == "background*", "the marked class in the table")


async def test_an_unknown_class_is_refused_and_audited_as_an_error(tmp_path: Path):
    async with fixed_console(tmp_path) as (app, pilot, clock):
        node, sid = next(iter(app.supervisor.fleet.sessions))
        with pytest.raises(OperatorError, match="unknown priority class 'urgent'"):
            await ConsoleOperator(app.supervisor, "ui").set_priority(node, sid, "urgent")
        assert app.supervisor.fleet.sessions[(node, sid)].priority == "normal"
        entries = [e for e in await app.supervisor.brain.audit_entries(500) if e.action == "operator.session.priority"]
        assert [e.details["result"] for e in entries] == ["error"]


async def test_the_report_carries_each_sessions_class_in_json_and_markdown(tmp_path: Path):
    store = await Store.open(tmp_path / "heady.db", priority=rules({"priority_class": "high", "project": "release"}))
    try:
        await store.ingest("n1", "j1", [started(1, "s1", project="release")])
        await store.set_priority("n1", "s1", "background")
        report = await gather_report(store, Config(), Paths(tmp_path / "config.toml", tmp_path), since=T0, until=T0 + 60, now=T0 + 60)
    finally:
        await store.close()
    assert [(s.id, s.priority, s.priority_by) for s in report.sessions] == [("s1", "background", "operator")]
    assert "| background (operator) |" in render(report, "md")
    assert "<td>background (operator)</td>" in render(report, "html")


def test_config_defaults_cap_high_sessions_at_two_per_node():
    assert Config().priority.max_high_per_node == 2


async def test_sessions_list_shows_the_stored_class(tmp_path: Path):
    from ledgerkit import sessions_list_json

    data = tmp_path / "data"
    store = await Store.open(data / "heady.db", priority=rules({"priority_class": "high", "project": "release"}))
    try:
        info = {"id": "n1", "hostname": "n1", "agent_version": "0.1.0", "os": "linux", "cpu_count": 4, "mem_total": 1 << 30, "labels": {}}
        await store.record_node("n1", hostname="n1", info=info, simulated=False, now=T0)
        await store.ingest("n1", "j1", [started(1, "s1", project="release"), started(2, "s2", project="web")])
        await store.set_priority("n1", "s2", "background")
    finally:
        await store.close()
    rows = await sessions_list_json(tmp_path, data)
    assert sorted((r["id"], r["priority"], r["priority_by"]) for r in rows) == [("s1", "high", "rule"), ("s2", "background", "operator")]
