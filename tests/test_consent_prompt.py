"""`heady consent prompt` driven through a real pseudo-terminal, and `heady consent html`."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from heady_agent.clock import SystemClock
from heady_tui.config import Config, Paths
from heady_tui.engine.consent import new_request
from heady_tui.records import Records
from heady_tui.store import Store
from report_kit import open_in_chromium

try:
    import pexpect
except ImportError:  # the pty tests skip with the reason; the others still run
    pexpect = None

needs_pty = pytest.mark.skipif(pexpect is None, reason="pexpect (dev dependency) is needed to drive the prompt through a pseudo-terminal")

PLAN = {
    "priority": "critical",
    "actions": [
        {"kind": "move", "node": "build-1", "action": "queue.move", "target": None, "to_node": "build-2", "count": 200, "value": None, "note": "move 200 queued items build-1 -> build-2"},
        {"kind": "concurrency", "node": "build-2", "action": "node.set_concurrency", "target": None, "to_node": None, "count": 0, "value": 4, "note": "raise concurrency on build-2 to 4"},
    ],
    "targets": ["build-1", "build-2"],
    "caps": {"max_cpu_percent": 80.0, "max_memory_mb": 2048.0, "max_duration_s": 300.0, "max_moves_per_step": 200},
    "estimated_duration_s": 14.0,
    "breaches": {"task_queue_depth": 1210.0},
    "excluded": {},
    "fingerprint": "fp-queue-1",
}


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADY_")}
    env["XDG_CONFIG_HOME"] = str(home / "config")
    return env


async def _with_records(data: Path, body):  # type: ignore[no-untyped-def]
    store = await Store.open(data / "heady.db")
    try:
        return await body(await Records.open(store, Paths(data / "none.toml", data).audit_anchor))
    finally:
        await store.close()


def _pending_request(data: Path) -> str:
    """A consent request as a console records it when equilibrium goes critical."""

    async def body(records: Records) -> str:
        req = new_request(PLAN, "fp-queue-1", now=SystemClock().now(), config=Config().consent, reason="equilibrium critical (task_queue_depth=1210)")
        await records.save_request(req)
        return req.id

    return asyncio.run(_with_records(data, body))


def _state(data: Path):  # type: ignore[no-untyped-def]
    async def body(records: Records):  # type: ignore[no-untyped-def]
        return await records.grants(), await records.denials(), await records.requests(), await records.audit_entries(), await records.verify_audit()

    return asyncio.run(_with_records(data, body))


def _spawn(home: Path, data: Path, reason: str = "queue overflow on build-1"):  # type: ignore[no-untyped-def]
    return pexpect.spawn(
        sys.executable, ["-m", "heady_tui", "consent", "prompt", reason, "--data-dir", str(data)],
        env=_env(home), encoding="utf-8", timeout=30, dimensions=(40, 160),
    )  # fmt: skip


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@needs_pty
@pytest.mark.parametrize(("key", "scope"), [("o", "single"), ("s", "session"), ("a", "persistent")])
def test_each_allow_key_records_a_grant_for_the_pending_plan(tmp_path: Path, data: Path, key: str, scope: str) -> None:
    request_id = _pending_request(data)
    child = _spawn(tmp_path, data)
    child.expect(r"\? ")
    before = child.before
    assert f"pending request {request_id} from the console" in before
    assert "move 200 queued items build-1 -> build-2" in before
    assert "caps: max_cpu_percent 80, max_memory_mb 2048" in before
    child.send(key)
    child.expect(r"granted (g-[0-9a-f]+) \(" + scope)
    grant_id = child.match.group(1)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    grants, _, requests, entries, verification = _state(data)
    (grant,) = grants
    assert (grant.id, grant.scope, grant.reason) == (grant_id, scope, "queue overflow on build-1")
    assert grant.caps == PLAN["caps"]
    assert grant.fingerprint == ("fp-queue-1" if scope == "single" else None)
    assert (requests[0].state, requests[0].grant_id) == ("granted", grant_id)
    assert [e.action for e in entries] == ["consent.grant", "operator.consent.decide"] and verification.ok


@needs_pty
@pytest.mark.parametrize("key", ["d", "\r"], ids=["d", "enter"])
def test_d_or_enter_denies_and_snoozes_the_request(tmp_path: Path, data: Path, key: str) -> None:
    request_id = _pending_request(data)
    child = _spawn(tmp_path, data)
    child.expect(r"\? ")
    child.send(key)
    child.expect(r"denied by \S+; this request is snoozed until")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    grants, denials, requests, entries, _ = _state(data)
    assert grants == []
    assert [(d.fingerprint, d.reason) for d in denials] == [("fp-queue-1", "queue overflow on build-1")]
    assert (requests[0].id, requests[0].state) == (request_id, "denied")
    assert [e.action for e in entries] == ["consent.deny", "operator.consent.decide"]


@needs_pty
def test_another_key_is_not_an_answer(tmp_path: Path, data: Path) -> None:
    _pending_request(data)
    child = _spawn(tmp_path, data)
    child.expect(r"\? ")
    child.send("x")
    child.expect("'x' is not an answer; press d, o, s, a or Enter")
    child.send("o")
    child.expect("granted")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@needs_pty
def test_without_a_pending_request_the_prompt_says_there_is_no_plan(tmp_path: Path, data: Path) -> None:
    child = _spawn(tmp_path, data)
    child.expect(r"\? ")
    assert "no console has a pending request: there is no plan to show" in child.before
    assert "caps: max_cpu_percent 80, max_memory_mb 2048, max_duration_s 300" in child.before
    child.send("o")
    child.expect(pexpect.EOF)
    child.close()
    (grant,), *_ = _state(data)
    assert (grant.scope, grant.fingerprint) == ("single", None)


def test_with_no_terminal_on_stdin_it_exits_2_with_one_line(tmp_path: Path, data: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "heady_tui", "consent", "prompt", "why", "--data-dir", str(data)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=_env(tmp_path), timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert re.fullmatch(r"heady: error: consent prompt needs a terminal on stdin; .*\n", done.stderr)
    assert not (data / "heady.db").exists()


def _page(tmp_path: Path, data: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "heady_tui", "consent", "html", "queue overflow on build-1", "--data-dir", str(data)],
        capture_output=True, text=True, env=_env(tmp_path), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_html_page_shows_the_plan_and_the_exact_grant_commands(tmp_path: Path, data: Path) -> None:
    _pending_request(data)
    page = _page(tmp_path, data)
    assert "move 200 queued items build-1 -&gt; build-2" in page
    for scope in ("single", "session", "persistent"):
        assert f"heady permissions grant --scope {scope} --reason &#x27;queue overflow on build-1&#x27; --data-dir {data}" in page


def test_the_html_page_cannot_grant_and_does_not_pretend_to(tmp_path: Path, data: Path) -> None:
    page = _page(tmp_path, data)
    assert not re.search(r"<(script|button|form|input|a)\b", page, re.I)
    assert "cannot grant or deny anything by itself" in page
    assert "no console has a pending request" in page.lower()
    assert not (data / "heady.db").exists()  # asking for a page records nothing


def test_the_html_page_opens_in_chromium(tmp_path: Path, data: Path) -> None:
    _pending_request(data)
    page = tmp_path / "permission.html"
    page.write_text(_page(tmp_path, data))
    dom, log = open_in_chromium(page, tmp_path / "profile")
    for anchor in ("static", "plan", "caps", "commands", "grant-single", "grant-session", "grant-persistent"):
        assert f'id="{anchor}"' in dom
    assert "Uncaught" not in log
