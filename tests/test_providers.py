"""Provider cost APIs against local servers that answer in Anthropic's and OpenAI's documented formats."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import httpx
import pytest

from heady_tui.config import ProviderCostConfig
from heady_tui.providers import (
    AnthropicAdmin,
    OpenAIAdmin,
    ProviderCost,
    ProviderError,
    fetch_provider_costs,
    reconcile_by_day,
    reconcile_by_model,
)
from reports_httpkit import FakeService, Recorded, Reply

SINCE = datetime(2026, 11, 19, 15, 30, tzinfo=timezone.utc).timestamp()
UNTIL = datetime(2026, 11, 21, 5, 0, tzinfo=timezone.utc).timestamp()
ANTHROPIC_KEY = "sk-ant-admin01-test-key"
OPENAI_KEY = "sk-admin-test-key"


def _now() -> float:
    return UNTIL


class _Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _anthropic_cost_page(day: str, results: list[dict], next_page: str | None) -> dict:
    return {
        "data": [{"starting_at": f"{day}T00:00:00Z", "ending_at": f"{day}T23:59:59Z", "results": results}],
        "has_more": next_page is not None,
        "next_page": next_page,
    }


def _cost(amount: str, model: str | None, token_type: str = "output_tokens") -> dict:
    return {
        "currency": "USD",
        "amount": amount,
        "workspace_id": None,
        "description": f"{model} Usage - {token_type}",
        "cost_type": "tokens",
        "context_window": "0-200k",
        "model": model,
        "service_tier": "standard",
        "token_type": token_type,
    }


def _anthropic_pages(request: Recorded) -> Reply:
    if request.query.get("page") == ["page_2"]:
        return Reply(200, _anthropic_cost_page("2026-11-20", [_cost("250", "claude-sonnet-4-5")], None))
    return Reply(
        200,
        _anthropic_cost_page("2026-11-19", [_cost("123.45", "claude-sonnet-4-5"), _cost("50", "claude-haiku-4-5", "uncached_input_tokens")], "page_2"),
    )


async def _anthropic(service: FakeService, sleeps: _Sleeps | None = None) -> AnthropicAdmin:
    client = httpx.AsyncClient(timeout=10)
    return AnthropicAdmin(ANTHROPIC_KEY, base_url=service.url, client=client, sleep=_Sleeps() if sleeps is None else sleeps, now=_now)


async def test_anthropic_cost_report_sends_the_documented_request() -> None:
    with FakeService(_anthropic_pages) as api:
        await (await _anthropic(api)).cost_report(SINCE, UNTIL)
    first = api.requests[0]
    assert first.method == "GET" and first.path == "/v1/organizations/cost_report"
    assert first.headers["x-api-key"] == ANTHROPIC_KEY
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert first.query == {
        "starting_at": ["2026-11-19T00:00:00Z"],
        "ending_at": ["2026-11-22T00:00:00Z"],
        "bucket_width": ["1d"],
        "group_by[]": ["description"],
        "limit": ["31"],
    }


async def test_anthropic_cost_report_follows_next_page_and_reads_cents() -> None:
    with FakeService(_anthropic_pages) as api:
        rows = await (await _anthropic(api)).cost_report(SINCE, UNTIL)
    assert api.requests[1].query["page"] == ["page_2"]
    assert rows == [
        ProviderCost("anthropic", "2026-11-19", "claude-sonnet-4-5", 1.2345),
        ProviderCost("anthropic", "2026-11-19", "claude-haiku-4-5", 0.5),
        ProviderCost("anthropic", "2026-11-20", "claude-sonnet-4-5", 2.5),
    ]


async def test_anthropic_usage_report_reads_nested_cache_creation_per_model() -> None:
    page = {
        "data": [
            {
                "starting_at": "2026-11-20T00:00:00Z",
                "ending_at": "2026-11-21T00:00:00Z",
                "results": [
                    {
                        "uncached_input_tokens": 1500,
                        "cache_creation": {"ephemeral_1h_input_tokens": 1000, "ephemeral_5m_input_tokens": 500},
                        "cache_read_input_tokens": 200,
                        "output_tokens": 500,
                        "server_tool_use": {"web_search_requests": 0},
                        "api_key_id": None,
                        "workspace_id": None,
                        "model": "claude-opus-4-5",
                        "service_tier": None,
                        "context_window": None,
                    }
                ],
            }
        ],
        "has_more": False,
        "next_page": None,
    }
    with FakeService(Reply(200, page)) as api:
        (row,) = await (await _anthropic(api)).usage_report(SINCE, UNTIL)
    assert api.requests[0].path == "/v1/organizations/usage_report/messages"
    assert api.requests[0].query["group_by[]"] == ["model"]
    assert (row.model, row.input_tokens, row.cache_creation_5m_tokens, row.cache_creation_1h_tokens) == ("claude-opus-4-5", 1500, 500, 1000)
    assert (row.cache_read_tokens, row.output_tokens) == (200, 500)


def _openai_pages(request: Recorded) -> Reply:
    def bucket(start: int, results: list[dict]) -> dict:
        return {"object": "bucket", "start_time": start, "end_time": start + 86400, "results": results}

    def result(value: float, line_item: str | None) -> dict:
        return {"object": "organization.costs.result", "amount": {"value": value, "currency": "usd"}, "line_item": line_item, "project_id": None}

    day1 = int(datetime(2026, 11, 19, tzinfo=timezone.utc).timestamp())
    if request.query.get("page") == ["AAAAAGdGxdEiJdKOAAAAAGcqsYA="]:
        return Reply(200, {"object": "page", "data": [bucket(day1 + 86400, [result(0.06, None)])], "has_more": False, "next_page": None})
    body = {
        "object": "page",
        "data": [bucket(day1, [result(1.5, "gpt-5-codex, input"), result(0.25, "gpt-5-codex, output")])],
        "has_more": True,
        "next_page": "AAAAAGdGxdEiJdKOAAAAAGcqsYA=",
    }
    return Reply(200, body)


async def test_openai_costs_sends_the_documented_request_and_pages() -> None:
    with FakeService(_openai_pages) as api:
        client = httpx.AsyncClient(timeout=10)
        rows = await OpenAIAdmin(OPENAI_KEY, base_url=api.url, client=client, sleep=_Sleeps(), now=_now).costs(SINCE, UNTIL)
    first = api.requests[0]
    assert first.path == "/v1/organization/costs"
    assert first.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert first.query == {
        "start_time": [str(int(datetime(2026, 11, 19, tzinfo=timezone.utc).timestamp()))],
        "end_time": [str(int(datetime(2026, 11, 22, tzinfo=timezone.utc).timestamp()))],
        "bucket_width": ["1d"],
        "group_by": ["line_item"],
        "limit": ["180"],
    }
    assert api.requests[1].query["page"] == ["AAAAAGdGxdEiJdKOAAAAAGcqsYA="]
    assert rows == [
        ProviderCost("openai", "2026-11-19", "gpt-5-codex", 1.5),
        ProviderCost("openai", "2026-11-19", "gpt-5-codex", 0.25),
        ProviderCost("openai", "2026-11-20", None, 0.06),
    ]


async def test_a_rejected_admin_key_is_a_one_line_error_with_the_api_message() -> None:
    error = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    with FakeService(Reply(401, error)) as api:
        with pytest.raises(ProviderError) as caught:
            await (await _anthropic(api)).cost_report(SINCE, UNTIL)
    assert str(caught.value) == "anthropic: admin key rejected (HTTP 401: invalid x-api-key)"
    assert len(api.requests) == 1


async def test_429_waits_for_retry_after_then_continues() -> None:
    sleeps = _Sleeps()
    with FakeService(_anthropic_pages) as api:
        api.replies.append(Reply(429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, {"retry-after": "17"}))
        rows = await (await _anthropic(api, sleeps)).cost_report(SINCE, UNTIL)
    assert sleeps == [17.0]
    assert len(rows) == 3


async def test_server_errors_are_retried_with_back_off() -> None:
    sleeps = _Sleeps()
    with FakeService(_anthropic_pages) as api:
        api.replies.extend([Reply(500, "oops"), Reply(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})])
        rows = await (await _anthropic(api, sleeps)).cost_report(SINCE, UNTIL)
    assert sleeps == [1.0, 2.0]
    assert len(rows) == 3


async def test_server_errors_that_persist_end_in_a_one_line_error() -> None:
    with FakeService(Reply(503, {"error": {"message": "The server is overloaded", "type": "server_error"}})) as api:
        client = httpx.AsyncClient(timeout=10)
        with pytest.raises(ProviderError, match=r"^openai: /v1/organization/costs still failing after 4 attempts \(HTTP 503: The server is overloaded\)$"):
            await OpenAIAdmin(OPENAI_KEY, base_url=api.url, client=client, sleep=_Sleeps(), now=_now).costs(SINCE, UNTIL)


async def test_has_more_without_a_new_cursor_is_an_error_not_a_loop() -> None:
    page = _anthropic_cost_page("2026-11-19", [], None) | {"has_more": True}
    with FakeService(Reply(200, page)) as api:
        with pytest.raises(ProviderError, match="says has_more but gives no new next_page"):
            await (await _anthropic(api)).cost_report(SINCE, UNTIL)


async def test_a_response_of_the_wrong_shape_is_a_one_line_error() -> None:
    with FakeService(Reply(200, {"data": "nope", "has_more": False})) as api:
        with pytest.raises(ProviderError, match=r"^anthropic: unexpected response from /v1/organizations/cost_report: data: "):
            await (await _anthropic(api)).cost_report(SINCE, UNTIL)


async def test_fetch_reports_a_missing_key_and_still_asks_the_other_provider(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeService(_openai_pages) as api:
        config = ProviderCostConfig(
            anthropic_admin_key_env="HEADY_TEST_ANTHROPIC", openai_admin_key_env="HEADY_TEST_OPENAI", openai_base_url=api.url
        )
        result = await fetch_provider_costs(config, SINCE, UNTIL, now=_now, env={"HEADY_TEST_OPENAI": OPENAI_KEY})
    assert result.errors == {"anthropic": "anthropic: $HEADY_TEST_ANTHROPIC is not set (cost.providers.anthropic_admin_key_env)"}
    assert result.providers == ["openai"]
    assert OPENAI_KEY not in caplog.text


async def test_fetch_with_no_provider_configured_asks_nobody() -> None:
    result = await fetch_provider_costs(ProviderCostConfig(), SINCE, UNTIL, now=_now, env={})
    assert result.rows == [] and result.errors == {}


def test_reconcile_by_day_puts_token_cost_beside_provider_cost() -> None:
    rows = reconcile_by_day(
        {"2026-11-19": 1.0, "2026-11-20": 2.0},
        [ProviderCost("anthropic", "2026-11-19", "m", 0.75), ProviderCost("openai", "2026-11-19", None, 0.5)],
    )
    assert [(r.key, r.from_tokens_usd, r.from_provider_usd, r.difference_usd) for r in rows] == [
        ("2026-11-19", 1.0, 1.25, 0.25),
        ("2026-11-20", 2.0, None, None),
    ]


def test_reconcile_by_model_groups_unnamed_provider_costs_as_other() -> None:
    rows = reconcile_by_model({"gpt-5-codex": 1.0}, [ProviderCost("openai", "2026-11-19", None, 0.06)])
    assert [(r.key, r.from_provider_usd) for r in rows] == [("(other)", 0.06), ("gpt-5-codex", None)]
