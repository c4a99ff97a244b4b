"""`heady report export` end to end: a real headless demo run fills the store, the CLI exports it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from heady_tui.engine.detector import METRICS
from heady_tui.report import ReportData
from report_kit import open_in_chromium
from reports_httpkit import FakeService, Recorded

pytestmark = pytest.mark.slow

DEMO_SECONDS = 20


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADY_")}
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["XDG_DATA_HOME"] = str(home / "data-home")
    return env


def heady(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heady_tui", *args], capture_output=True, text=True, env=_env(home), timeout=timeout)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], list[Recorded]]:
    """`heady demo --scenario queue-overflow --headless` as a child process, with a Slack webhook
    (a local server) configured: (home with the data dir, stdout events, webhook requests)."""
    home = tmp_path_factory.mktemp("demo")
    with FakeService() as slack:
        config = home / "config.toml"
        config.write_text(f'[[alerts.webhooks]]\nkind = "slack"\nurl = "{slack.url}/services/T1/B1/secret"\nmin_severity = "warning"\n')
        done = heady(home, "demo", "--scenario", "queue-overflow", "--headless", "--for", str(DEMO_SECONDS), "--speed", "4",
                     "--config", str(config), "--data-dir", str(home / "data"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert "equilibrium.level" in [e["event"] for e in events], events
    assert "secret" not in done.stderr
    return home, events, slack.requests


@pytest.fixture(scope="module")
def demo(demo_run: tuple[Path, list[dict], list[Recorded]]) -> Path:
    return demo_run[0]


def test_a_demo_run_posts_its_alerts_to_the_configured_webhook(demo_run: tuple[Path, list[dict], list[Recorded]]) -> None:
    _, events, requests = demo_run
    texts = [r.json()["text"] for r in requests]
    assert any(t.startswith("[simulated] heady") and "fleet equilibrium" in t for t in texts), texts
    sent = [e for e in events if e["event"] == "alert.sent"]
    assert sent and all(e["webhook"] == "slack:127.0.0.1" and e["ok"] for e in sent)
    assert len(sent) == len(requests)


def _export(home: Path, fmt: str, *extra: str) -> str:
    out = home / f"report.{fmt}"
    done = heady(home, "report", "export", "--data-dir", str(home / "data"), "--since", "2h", "--format", fmt, "-o", str(out), *extra)
    assert done.returncode == 0, done.stderr
    return out.read_text()


def test_json_export_of_a_demo_run_validates_and_says_simulated(demo: Path) -> None:
    text = _export(demo, "json")
    assert text.splitlines()[0] == '{"simulated": true,'
    report = ReportData.model_validate_json(text)
    assert {n.id for n in report.nodes} == {"sim-1", "sim-2", "sim-3", "sim-4"}
    assert report.sessions and report.costs.total_usd > 0
    assert any(e.level in ("degraded", "critical") for e in report.equilibrium)
    assert report.audit.verified


def test_json_export_of_a_queue_overflow_run_has_the_queue_metrics_own_level_changes(demo: Path) -> None:
    report = ReportData.model_validate_json(_export(demo, "json"))
    queue = [e for e in report.equilibrium if e.metric == "task_queue_depth"]
    assert queue[0].previous == "unknown" and queue[0].value is not None  # first judged when the nodes reported
    breaches = [e for e in queue if e.level in ("degraded", "critical")]
    assert breaches and all(e.value is not None and e.value > 500 for e in breaches)  # entered above its threshold
    assert {e.metric for e in report.equilibrium} <= {"overall", *METRICS}
    assert any(e.metric == "overall" and e.level in ("degraded", "critical") for e in report.equilibrium)


def test_markdown_export_shows_the_same_totals_as_json(demo: Path) -> None:
    report = ReportData.model_validate_json(_export(demo, "json"))
    md = _export(demo, "md")
    assert md.splitlines()[0].startswith("> **SIMULATED FLEET")
    assert f"**Total cost: ${report.costs.total_usd:,.2f}**" in md
    for model, usd in report.costs.by_model.items():
        assert f"| {model} | ${usd:,.2f} |" in md
    # the anchor (count and time) sits between the head and the verdict
    assert f"{report.audit.entries} entries, head {report.audit.head}, " in md and ", verified (" in md


def test_html_export_opens_in_chromium_with_its_sections(demo: Path, tmp_path: Path) -> None:
    report = ReportData.model_validate_json(_export(demo, "json"))
    _export(demo, "html")
    dom, log = open_in_chromium(demo / "report.html", tmp_path / "profile")
    for anchor in ("simulated", "charts", "nodes", "sessions", "cost-by-model", "timeline", "audit"):
        assert f'id="{anchor}"' in dom, anchor
    assert f"${report.costs.total_usd:,.2f}" in dom
    assert "<svg" in dom
    assert "Uncaught" not in log and "CONSOLE" not in log


def test_export_to_stdout_without_o(demo: Path) -> None:
    done = heady(demo, "report", "export", "--data-dir", str(demo / "data"), "--format", "md")
    assert done.returncode == 0 and done.stdout.startswith("> **SIMULATED FLEET")


def test_a_bad_since_exits_2_with_one_line(demo: Path) -> None:
    done = heady(demo, "report", "export", "--data-dir", str(demo / "data"), "--since", "last tuesday")
    assert done.returncode == 2
    assert re.fullmatch(r"heady: error: --since: not a duration or an ISO 8601 time: 'last tuesday' .*\n", done.stderr)


def test_an_unwritable_output_exits_1_with_one_line_and_leaves_nothing(demo: Path, tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "report.html"
    done = heady(demo, "report", "export", "--data-dir", str(demo / "data"), "-o", str(target))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and f"cannot write {target}" in done.stderr
    assert not target.parent.exists()


def test_a_data_dir_without_a_database_exits_1(tmp_path: Path) -> None:
    done = heady(tmp_path, "report", "export", "--data-dir", str(tmp_path / "empty"))
    assert done.returncode == 1 and "no data yet" in done.stderr


def test_a_corrupt_database_exits_1_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "heady.db").write_bytes(b"this is not a database" * 100)
    done = heady(tmp_path, "report", "export", "--data-dir", str(data), "--format", "json")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "corrupt or not a heady database" in done.stderr
    assert done.stdout == ""
