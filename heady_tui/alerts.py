"""Webhook alerts: Slack, Discord and generic JSON, fed by the supervisor's HeadyEvents.

The console must never wait on a chat service: `handle()` only classifies, de-duplicates and puts
the alert on a bounded queue per webhook; one worker task per webhook delivers it with a timeout
and bounded retries. Webhook URLs are secrets (whoever holds one can post to the channel), so only
the kind and the host are ever logged or published.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from heady_agent.clock import Clock
from heady_agent.config import ConfigError

from .config import AlertsConfig, WebhookConfig
from .events import HeadyEvent, iso_utc
from .retries import Transient, retrying

__all__ = ["Alert", "AlertDispatcher", "SEVERITIES", "classify", "slack_payload", "discord_payload", "json_payload"]

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

# A Retry-After longer than this is cut short: an alert that late is worth less than the next one.
MAX_RETRY_AFTER_S = 60.0
QUEUE_SIZE = 100

_DISCORD_COLOURS = {"info": 0x3B82F6, "warning": 0xF59E0B, "critical": 0xDC2626}
_SLACK_ICONS = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}


@dataclass(frozen=True)
class Alert:
    """One event worth telling people about, with its severity and a short human text."""

    event: HeadyEvent
    severity: Severity
    title: str
    lines: tuple[str, ...]
    dedupe_key: tuple[Any, ...]
    simulated: bool = False

    @property
    def text(self) -> str:
        prefix = "[simulated] " if self.simulated else ""
        return f"{prefix}heady {self.severity}: {self.title}"


def _money(value: Any) -> str:
    try:
        return f"${float(value):,.2f}"
    except (TypeError, ValueError):
        return "$?"


def _minutes(seconds: Any) -> str:
    try:
        whole = int(float(seconds))
    except (TypeError, ValueError, OverflowError):
        return "?"
    minutes, secs = divmod(max(0, whole), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


LEVEL_SEVERITY: dict[str, Severity] = {"critical": "critical", "degraded": "warning", "unknown": "warning"}


def classify(event: HeadyEvent, *, simulated: bool = False) -> Alert | None:
    """Map a HeadyEvent to an Alert, or None for events that are not alerts (see docs/reports.md)."""
    d = event.details
    name = event.name
    if name == "equilibrium.level":
        level = d.get("level")
        severity = LEVEL_SEVERITY.get(str(level), "info")
        metrics = d.get("metrics") or {}
        lines = tuple(f"{metric}: {value:.3g}" if isinstance(value, (int, float)) else f"{metric}: {value}" for metric, value in metrics.items())
        title = f"fleet equilibrium {level} (was {d.get('previous', 'unknown')})"
        return Alert(event, severity, title, lines, (name, level), simulated)
    if name == "consent.requested":
        actions = d.get("actions")
        count = len(actions) if isinstance(actions, list) else actions
        what = "pause an account's sessions" if str(d.get("topic", "")).startswith("limit_guard:") else "rebalance"
        title = f"permission to {what} requested: {d.get('reason', '')}".rstrip(": ")
        lines = (f"priority: {d.get('priority', '?')}", f"actions: {count}", "answer in the console or with `heady consent prompt`")
        return Alert(event, "warning", title, lines, (name, d.get("request")), simulated)
    if name in ("consent.granted", "consent.denied"):
        verb = "granted" if name == "consent.granted" else "denied"
        lines = tuple(f"{key}: {d[key]}" for key in ("scope", "grantor") if d.get(key))
        return Alert(event, "info", f"rebalance permission {verb}", lines, (name, d.get("request")), simulated)
    if name == "rebalance.started":
        actions = d.get("actions")
        count = len(actions) if isinstance(actions, list) else actions
        lines = (f"priority: {d.get('priority', '?')}", f"actions: {count}", f"grant: {d.get('grant', '?')}")
        return Alert(event, "warning", "rebalance started", lines, (name, d.get("run")), simulated)
    if name == "rebalance.stopped":
        reason = d.get("reason", "?")
        # Stopping because balance returned is the good ending; anything else deserves a look.
        severity = "info" if reason == "balanced" else "warning"
        lines = (f"duration: {d.get('duration_s', '?')} s", f"reverted: {d.get('reverted', '?')}")
        return Alert(event, severity, f"rebalance stopped: {reason}", lines, (name, d.get("run")), simulated)
    if name == "policy.needs_attention":
        subject = f"{d.get('node', '?')}/{d.get('session', '?')}"
        title = f"policy {d.get('policy', '?')} needs attention on {subject}"
        lines = (f"attempts: {d.get('attempts', '?')}", "no more automatic tries until reset or the window passes")
        return Alert(event, "warning", title, lines, (name, d.get("policy"), d.get("node"), d.get("session")), simulated)
    if name == "budget.notice":
        try:
            percent = float(d.get("percent", 0))
        except (TypeError, ValueError):
            percent = 0.0
        severity = "critical" if percent >= 100 else "warning" if percent >= 80 else "info"
        title = f"{d.get('budget', '?')} budget at {percent:.0f}%"
        lines = (f"spent: {_money(d.get('spent_usd'))} of {_money(d.get('budget_usd'))}",)
        if d.get("account"):  # an account's limit window (limit_guard): its own figure, not a spend
            title = f"account {d['account']}: {d.get('window', '?')} window {percent:.0f}% used ({d.get('basis', '?')})"
            lines = (f"resets at {d.get('resets_at') or 'unknown'}", f"spent by the fleet in the window: {_money(d.get('spent_usd'))}")
        # Each step (50, 80, 100 %) is news once; repeats of the same step are not.
        return Alert(event, severity, title, lines, (name, d.get("budget"), severity), simulated)
    if name == "node.offline":
        title = f"node {d.get('node', '?')} lost"
        return Alert(event, "warning", title, (f"reason: {d.get('reason', '?')}",), (name, d.get("node")), simulated)
    if name == "session.waiting":
        project = d.get("project") or d.get("session", "?")
        title = f"{project} on {d.get('node', '?')} waits for you ({d.get('reason') or 'unknown reason'})"
        lines = (f"waiting for {_minutes(d.get('waited_s'))}", f"session: {d.get('session', '?')}")
        # One alert per wait: a new wait of the same session begins at a new `since`.
        return Alert(event, "warning", title, lines, (name, d.get("node"), d.get("session"), d.get("since")), simulated)
    if name == "healing.critical":
        issues = d.get("issues")
        lines = tuple(str(issue) for issue in issues[:5]) if isinstance(issues, list) else ()
        title = f"critical weak point: {d.get('subject', '?')} ({d.get('analyzer', '?')})"
        lines += (f"strategy: {d.get('strategy', '?')}",)
        # Once per weak point: it turns critical once, and a new weak point has a new id.
        return Alert(event, "critical", title, lines, (name, d.get("weak_point")), simulated)
    if name == "node.journal_reset":
        title = f"node {d.get('node', '?')} journal reset"
        lines = (f"{d.get('old_journal', '?')} -> {d.get('new_journal', '?')}", "events before the reset may be missing")
        return Alert(event, "warning", title, lines, (name, d.get("node"), d.get("new_journal")), simulated)
    return None


# --- payloads, one per webhook kind ---------------------------------------------------------------


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Slack incoming webhook: `text` is the notification fallback, `blocks` the message."""
    body = "\n".join(alert.lines) or " "
    return {
        "text": alert.text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": alert.text[:150], "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}},
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"{_SLACK_ICONS[alert.severity]} {alert.event.name} at {iso_utc(alert.event.ts)}"}
                ],
            },
        ],
    }


def discord_payload(alert: Alert) -> dict[str, Any]:
    """Discord webhook: `content` plus one embed, within Discord's field length limits."""
    fields = [{"name": "severity", "value": alert.severity, "inline": True}, {"name": "event", "value": alert.event.name, "inline": True}]
    return {
        "content": alert.text[:2000],
        "embeds": [
            {
                "title": alert.title[:256],
                "description": ("\n".join(alert.lines) or alert.title)[:4096],
                "color": _DISCORD_COLOURS[alert.severity],
                "timestamp": iso_utc(alert.event.ts),
                "fields": fields,
                "footer": {"text": "heady (simulated fleet)" if alert.simulated else "heady"},
            }
        ],
        "allowed_mentions": {"parse": []},
    }


def json_payload(alert: Alert) -> dict[str, Any]:
    """Generic JSON: the event exactly as headless mode prints it, plus severity and the summary."""
    return {**alert.event.to_dict(), "severity": alert.severity, "summary": alert.text, "simulated": alert.simulated}


_PAYLOADS: dict[str, Callable[[Alert], dict[str, Any]]] = {
    "slack": slack_payload,
    "discord": discord_payload,
    "json": json_payload,
}


# --- delivery ---------------------------------------------------------------------------------------


@dataclass
class _Webhook:
    config: WebhookConfig
    url: str
    label: str  # "slack:hooks.slack.com": safe to log and publish
    queue: asyncio.Queue[Alert]
    dropped: int = 0


def _resolve_url(index: int, hook: WebhookConfig, env: Mapping[str, str]) -> str:
    if hook.url:
        return hook.url
    value = env.get(hook.url_env or "")
    if not value:
        raise ConfigError(f"alerts.webhooks[{index}].url_env: ${hook.url_env} is not set")
    return value


def _label(kind: str, url: str) -> str:
    return f"{kind}:{urlsplit(url).hostname or '?'}"


class _RedactUrls(logging.Filter):
    """httpx logs every request line with its full URL at INFO; a webhook URL is a secret, so it is
    replaced by the webhook's kind:host before any handler sees the record."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = message
        for url, label in self.secrets.items():
            redacted = redacted.replace(url, f"<{label} webhook>")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_redact = _RedactUrls()
logging.getLogger("httpx").addFilter(_redact)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)


class AlertDispatcher:
    """Turns HeadyEvents into webhook posts. `handle` is synchronous and never blocks."""

    def __init__(
        self,
        config: AlertsConfig,
        clock: Clock,
        *,
        publish: Callable[[HeadyEvent], None] | None = None,
        simulated: bool | Callable[[], bool] = False,
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff_initial_s: float = 1.0,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._config = config
        self._clock = clock
        self._publish = publish
        # The supervisor learns that its fleet is simulated from the first hello, after start.
        self._simulated: Callable[[], bool] = simulated if callable(simulated) else (lambda: simulated)
        self._sleep = sleep
        self._backoff_initial_s = backoff_initial_s
        self._transport = transport
        environ = os.environ if env is None else env
        self._webhooks = [
            _Webhook(hook, url, _label(hook.kind, url), asyncio.Queue(maxsize=queue_size))
            for index, hook in enumerate(config.webhooks)
            for url in [_resolve_url(index, hook, environ)]
        ]
        for hook in self._webhooks:
            _redact.secrets[hook.url] = hook.label
        self._last_sent: dict[tuple[Any, ...], float] = {}
        self._client: httpx.AsyncClient | None = None
        self._workers: list[asyncio.Task[None]] = []

    @property
    def webhooks(self) -> list[str]:
        """What is configured, as kind:host (never the URL)."""
        return [hook.label for hook in self._webhooks]

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self._config.timeout_s, transport=self._transport, follow_redirects=False)
        self._workers = [asyncio.create_task(self._work(hook), name=f"alerts {hook.label}") for hook in self._webhooks]

    async def stop(self, drain_timeout_s: float = 2.0) -> None:
        """Give queued alerts a short chance to go out, then stop; never hangs the console's exit."""
        try:
            await asyncio.wait_for(self.drain(), timeout=drain_timeout_s)
        except TimeoutError:
            log.warning("alerts: stopping with %d undelivered", sum(h.queue.qsize() for h in self._webhooks))
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def drain(self) -> None:
        """Wait until every queued alert has been delivered or given up on."""
        await asyncio.gather(*(hook.queue.join() for hook in self._webhooks))

    def handle(self, event: HeadyEvent) -> None:
        """Supervisor subscriber: classify, suppress duplicates, enqueue per webhook."""
        alert = classify(event, simulated=self._simulated())
        if alert is None:
            return
        now = self._clock.now()
        last = self._last_sent.get(alert.dedupe_key)
        if last is not None and now - last < self._config.dedupe_window_s:
            return
        self._last_sent[alert.dedupe_key] = now
        for hook in self._webhooks:
            if _RANK[alert.severity] < _RANK[hook.config.min_severity]:
                continue
            try:
                hook.queue.put_nowait(alert)
            except asyncio.QueueFull:
                hook.dropped += 1
                log.warning("alerts: %s is not keeping up; dropped %s (%d dropped so far)", hook.label, event.name, hook.dropped)

    async def _work(self, hook: _Webhook) -> None:
        while True:
            alert = await hook.queue.get()
            try:
                ok = await self._deliver(hook, alert)
            except Exception:  # a bug in one delivery must not end the worker
                log.exception("alerts: %s: delivering %s failed", hook.label, alert.event.name)
                ok = False
            try:
                if self._publish is not None:
                    self._publish(HeadyEvent("alert.sent", self._clock.now(), {"webhook": hook.label, "event": alert.event.name, "ok": ok}))
            finally:
                hook.queue.task_done()

    async def _deliver(self, hook: _Webhook, alert: Alert) -> bool:
        assert self._client is not None, "start() first"
        payload = _PAYLOADS[hook.config.kind](alert)
        attempts = self._config.max_retries + 1

        def retried(error: Transient, attempt: int, wait_s: float) -> None:
            log.info("alerts: %s: %s, retry %d in %.1f s", hook.label, error.problem, attempt, wait_s)

        retry = retrying(attempts=attempts, initial_s=self._backoff_initial_s, sleep=self._sleep, on_retry=retried)
        try:
            return await retry(self._post_once, hook, alert, payload)
        except Transient as exc:
            log.warning("alerts: %s: giving up on %s after %d attempts: %s", hook.label, alert.event.name, attempts, exc.problem)
            return False

    async def _post_once(self, hook: _Webhook, alert: Alert, payload: dict[str, Any]) -> bool:
        """True when delivered, False when refused for good; Transient when worth another try."""
        assert self._client is not None
        try:
            response = await self._client.post(hook.url, json=payload)
        except httpx.HTTPError as exc:
            raise Transient(type(exc).__name__) from None  # str(exc) of some httpx errors carries the URL
        if response.is_success:
            return True
        problem = f"HTTP {response.status_code}"
        if response.status_code == 429:
            hinted = retry_after_seconds(response.headers.get("retry-after"), self._clock.now())
            raise Transient(problem, min(hinted, MAX_RETRY_AFTER_S) if hinted is not None else None)
        if response.status_code >= 500 or response.status_code == 408:
            raise Transient(problem)
        log.warning("alerts: %s refused %s: %s (not retried)", hook.label, alert.event.name, problem)
        return False
