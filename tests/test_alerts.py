"""Webhook alerts against a local HTTP server that answers like Slack / Discord / a JSON receiver."""

from __future__ import annotations

import asyncio
import email.utils
import logging

import pytest

from heady_agent.clock import ManualClock
from heady_agent.config import ConfigError
from heady_tui.alerts import AlertDispatcher, classify, retry_after_seconds
from heady_tui.config import AlertsConfig, WebhookConfig
from heady_tui.events import HeadyEvent
from reports_httpkit import FakeService, Reply

SECRET_PATH = "/services/T000/B000/XXXXsecretXXXX"

CRITICAL = HeadyEvent(
    "equilibrium.level",
    1_800_000_000.0,
    {"level": "critical", "previous": "degraded", "metrics": {"task_queue_depth": 1210.0, "error_rate": 0.02}},
)
GRANTED = HeadyEvent("consent.granted", 1_800_000_010.0, {"request": "r1", "grant": "g1", "scope": "single", "grantor": "ops@host"})


def _config(service: FakeService, kind: str = "json", min_severity: str = "info", **alerts: object) -> AlertsConfig:
    hook = WebhookConfig(kind=kind, url=service.url + SECRET_PATH, min_severity=min_severity)
    return AlertsConfig(webhooks=[hook], **alerts)


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[HeadyEvent] = []
        self.sleeps: list[float] = []

    def publish(self, event: HeadyEvent) -> None:
        self.sent.append(event)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


async def _run(config: AlertsConfig, events: list[HeadyEvent], *, clock: ManualClock | None = None, **kw: object) -> _Recorder:
    rec = _Recorder()
    dispatcher = AlertDispatcher(config, clock or ManualClock(), publish=rec.publish, sleep=rec.sleep, **kw)
    await dispatcher.start()
    try:
        for event in events:
            dispatcher.handle(event)
        await asyncio.wait_for(dispatcher.drain(), timeout=20)
    finally:
        await dispatcher.stop()
    return rec


async def test_slack_webhook_receives_text_and_blocks() -> None:
    with FakeService() as slack:
        await _run(_config(slack, "slack"), [CRITICAL])
    (request,) = slack.requests
    assert request.method == "POST" and request.path == SECRET_PATH
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["text"] == "heady critical: fleet equilibrium critical (was degraded)"
    assert [block["type"] for block in body["blocks"]] == ["header", "section", "context"]
    assert "task_queue_depth: 1.21e+03" in body["blocks"][1]["text"]["text"]


async def test_discord_webhook_receives_content_and_an_embed() -> None:
    with FakeService(Reply(204, "")) as discord:
        rec = await _run(_config(discord, "discord"), [CRITICAL])
    body = discord.requests[0].json()
    assert body["content"].startswith("heady critical:")
    (embed,) = body["embeds"]
    assert embed["title"] == "fleet equilibrium critical (was degraded)"
    assert embed["color"] == 0xDC2626
    assert embed["timestamp"] == "2027-01-15T08:00:00.000Z"
    assert body["allowed_mentions"] == {"parse": []}
    assert rec.sent[0].details["ok"] is True


async def test_json_webhook_receives_the_event_as_headless_prints_it() -> None:
    with FakeService() as receiver:
        await _run(_config(receiver, "json"), [CRITICAL])
    body = receiver.requests[0].json()
    assert body["event"] == "equilibrium.level"
    assert body["ts"] == "2027-01-15T08:00:00.000Z"
    assert body["level"] == "critical" and body["metrics"]["task_queue_depth"] == 1210.0
    assert body["severity"] == "critical" and body["simulated"] is False


async def test_simulated_fleet_alerts_say_so() -> None:
    with FakeService() as slack:
        await _run(_config(slack, "slack"), [CRITICAL], simulated=True)
    assert slack.requests[0].json()["text"].startswith("[simulated] heady critical:")


async def test_events_below_the_minimum_severity_are_not_sent() -> None:
    with FakeService() as receiver:
        rec = await _run(_config(receiver, min_severity="warning"), [GRANTED, CRITICAL])
    assert [r.json()["event"] for r in receiver.requests] == ["equilibrium.level"]
    assert len(rec.sent) == 1


async def test_events_that_are_not_alerts_are_ignored() -> None:
    noise = [
        HeadyEvent("ingest.stats", 1.0, {"node": "a", "stored": 10, "duplicates": 0}),
        HeadyEvent("alert.sent", 1.0, {"webhook": "json:x", "event": "node.offline", "ok": True}),
        HeadyEvent("node.online", 1.0, {"node": "a"}),
    ]
    with FakeService() as receiver:
        await _run(_config(receiver), noise)
    assert receiver.requests == []


async def test_duplicates_within_the_window_are_suppressed_and_sent_again_after_it() -> None:
    clock = ManualClock()
    rec = _Recorder()
    with FakeService() as receiver:
        dispatcher = AlertDispatcher(_config(receiver, dedupe_window_s=300), clock, publish=rec.publish, sleep=rec.sleep)
        await dispatcher.start()
        try:
            dispatcher.handle(CRITICAL)
            clock.advance(299)
            dispatcher.handle(CRITICAL)
            clock.advance(2)
            dispatcher.handle(CRITICAL)
            await asyncio.wait_for(dispatcher.drain(), timeout=20)
        finally:
            await dispatcher.stop()
    assert len(receiver.requests) == 2


async def test_429_waits_as_long_as_retry_after_says_then_delivers() -> None:
    with FakeService() as slack:
        slack.replies.append(Reply(429, "rate limited", {"Retry-After": "7"}))
        rec = await _run(_config(slack, "slack"), [CRITICAL])
    assert len(slack.requests) == 2
    assert rec.sleeps == [7.0]
    assert rec.sent[0].details == {"webhook": "slack:127.0.0.1", "event": "equilibrium.level", "ok": True}


def test_retry_after_as_an_http_date_is_read_relative_to_now() -> None:
    now = 1_800_000_000.0
    assert retry_after_seconds(email.utils.formatdate(now + 12, usegmt=True), now) == 12.0
    assert retry_after_seconds("soon", now) is None


async def test_server_errors_are_retried_with_doubling_back_off_then_reported_failed() -> None:
    with FakeService(Reply(503, "busy")) as receiver:
        rec = await _run(_config(receiver, max_retries=3), [CRITICAL], backoff_initial_s=0.5)
    assert len(receiver.requests) == 4
    assert rec.sleeps == [0.5, 1.0, 2.0]
    assert rec.sent[0].details["ok"] is False


async def test_a_client_error_is_not_retried() -> None:
    with FakeService(Reply(404, "no_service")) as slack:
        rec = await _run(_config(slack, "slack"), [CRITICAL])
    assert len(slack.requests) == 1 and rec.sleeps == []
    assert rec.sent[0].details["ok"] is False


async def test_the_webhook_url_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeService(Reply(500, "oops")) as receiver:
        await _run(_config(receiver, max_retries=1), [CRITICAL])
    assert "alerts: json:127.0.0.1" in caplog.text
    assert "secret" not in caplog.text


async def test_an_unreachable_webhook_times_out_and_is_reported_without_blocking_others() -> None:
    rec = _Recorder()
    with FakeService() as healthy:
        dead = WebhookConfig(kind="json", url="http://127.0.0.1:9/hook")  # discard port: refused
        config = AlertsConfig(webhooks=[dead, WebhookConfig(kind="json", url=healthy.url + "/ok")], max_retries=1, timeout_s=1)
        dispatcher = AlertDispatcher(config, ManualClock(), publish=rec.publish, sleep=rec.sleep)
        await dispatcher.start()
        try:
            dispatcher.handle(CRITICAL)
            await asyncio.wait_for(dispatcher.drain(), timeout=20)
        finally:
            await dispatcher.stop()
    assert sorted((e.details["webhook"], e.details["ok"]) for e in rec.sent) == [("json:127.0.0.1", False), ("json:127.0.0.1", True)]
    assert len(healthy.requests) == 1


async def test_the_queue_is_bounded_and_overflow_is_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with FakeService() as receiver:
        dispatcher = AlertDispatcher(_config(receiver), ManualClock(), queue_size=2)
        # Not started: nothing drains, so the third distinct alert finds the queue full.
        for node in ("a", "b", "c"):
            dispatcher.handle(HeadyEvent("node.offline", 1.0, {"node": node, "reason": "closed"}))
    assert "dropped node.offline (1 dropped so far)" in caplog.text


def test_a_missing_url_env_is_a_one_line_config_error() -> None:
    config = AlertsConfig(webhooks=[WebhookConfig(kind="slack", url_env="HEADY_TEST_NO_SUCH_HOOK")])
    with pytest.raises(ConfigError, match=r"^alerts.webhooks\[0\].url_env: \$HEADY_TEST_NO_SUCH_HOOK is not set$"):
        AlertDispatcher(config, ManualClock(), env={})


def test_url_env_is_read_from_the_environment() -> None:
    config = AlertsConfig(webhooks=[WebhookConfig(kind="discord", url_env="HOOK")])
    dispatcher = AlertDispatcher(config, ManualClock(), env={"HOOK": "https://discord.com/api/webhooks/1/abc"})
    assert dispatcher.webhooks == ["discord:discord.com"]


@pytest.mark.parametrize(
    ("event", "severity"),
    [
        (HeadyEvent("equilibrium.level", 0, {"level": "critical"}), "critical"),
        (HeadyEvent("equilibrium.level", 0, {"level": "degraded"}), "warning"),
        (HeadyEvent("equilibrium.level", 0, {"level": "balanced"}), "info"),
        (HeadyEvent("consent.requested", 0, {"request": "r", "reason": "queue", "actions": []}), "warning"),
        (HeadyEvent("rebalance.stopped", 0, {"run": "x", "reason": "balanced"}), "info"),
        (HeadyEvent("rebalance.stopped", 0, {"run": "x", "reason": "max_duration"}), "warning"),
        (HeadyEvent("policy.needs_attention", 0, {"policy": "kill_on_cost"}), "warning"),
        (HeadyEvent("budget.notice", 0, {"budget": "daily", "percent": 50}), "info"),
        (HeadyEvent("budget.notice", 0, {"budget": "daily", "percent": 80}), "warning"),
        (HeadyEvent("budget.notice", 0, {"budget": "daily", "percent": 104}), "critical"),
        (HeadyEvent("node.offline", 0, {"node": "a"}), "warning"),
    ],
)
def test_each_alerting_event_has_its_documented_severity(event: HeadyEvent, severity: str) -> None:
    alert = classify(event)
    assert alert is not None and alert.severity == severity
