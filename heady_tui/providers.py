"""Optional provider cost APIs: what Anthropic and OpenAI say was spent, beside our token-based cost.

Anthropic Admin API (`x-api-key` admin key + `anthropic-version`):
- `GET /v1/organizations/cost_report?starting_at&ending_at&bucket_width=1d&group_by[]=description&limit&page`
  -> `{data: [{starting_at, ending_at, results: [{amount, currency, model, cost_type, token_type,
  description, ...}]}], has_more, next_page}`. `amount` is a decimal string in the currency's lowest
  unit (cents): "123.45" USD is $1.2345.
- `GET /v1/organizations/usage_report/messages?...&group_by[]=model` -> the same envelope, results
  `{model, uncached_input_tokens, cache_creation: {ephemeral_5m_input_tokens, ephemeral_1h_input_tokens},
  cache_read_input_tokens, output_tokens, ...}`.
OpenAI (`Authorization: Bearer` admin key):
- `GET /v1/organization/costs?start_time&end_time&bucket_width=1d&group_by=line_item&limit&page`
  -> `{object: "page", data: [{object: "bucket", start_time, end_time, results: [{object:
  "organization.costs.result", amount: {value, currency}, line_item, project_id}]}], has_more, next_page}`.
  `amount.value` is in dollars; a line item names the model before the comma ("gpt-4o-2024-08-06, input").

Keys come from the environment variables named in `[cost.providers]` and are never logged.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from .alerts import retry_after_seconds
from .config import ProviderCostConfig
from .retries import Transient, retrying

__all__ = [
    "AnthropicAdmin",
    "OpenAIAdmin",
    "ProviderCost",
    "ProviderCosts",
    "ProviderError",
    "ProviderUsage",
    "ReconciledRow",
    "fetch_provider_costs",
    "reconcile_by_day",
    "reconcile_by_model",
]

log = logging.getLogger(__name__)

ANTHROPIC_VERSION = "2023-06-01"
MAX_RETRY_AFTER_S = 120.0
MAX_PAGES = 1000  # a provider that keeps saying has_more with new cursors is broken, not infinite


class ProviderError(Exception):
    """A provider API problem, as one line naming the provider."""


@dataclass(frozen=True)
class ProviderCost:
    provider: str
    day: str  # UTC date of the bucket, YYYY-MM-DD
    model: str | None
    usd: float


@dataclass(frozen=True)
class ProviderUsage:
    provider: str
    day: str
    model: str | None
    input_tokens: int  # uncached
    cache_creation_5m_tokens: int
    cache_creation_1h_tokens: int
    cache_read_tokens: int
    output_tokens: int


@dataclass
class ProviderCosts:
    rows: list[ProviderCost] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # provider -> one-line error

    @property
    def providers(self) -> list[str]:
        return sorted({row.provider for row in self.rows})


# --- response shapes (pydantic at the boundary; unknown fields are ignored) ---------------------------


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _AnthropicCostResult(_Shape):
    amount: str
    currency: str = "USD"
    model: str | None = None
    description: str | None = None


class _AnthropicCacheCreation(_Shape):
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class _AnthropicUsageResult(_Shape):
    model: str | None = None
    uncached_input_tokens: int = 0
    cache_creation: _AnthropicCacheCreation = _AnthropicCacheCreation()
    cache_read_input_tokens: int = 0
    output_tokens: int = 0


class _AnthropicBucket(_Shape):
    starting_at: str
    ending_at: str
    results: list[dict[str, Any]]


class _AnthropicPage(_Shape):
    data: list[_AnthropicBucket]
    has_more: bool
    next_page: str | None = None


class _OpenAIAmount(_Shape):
    value: float
    currency: str = "usd"


class _OpenAICostResult(_Shape):
    amount: _OpenAIAmount
    line_item: str | None = None
    project_id: str | None = None


class _OpenAIBucket(_Shape):
    start_time: int
    end_time: int
    results: list[_OpenAICostResult]


class _OpenAIPage(_Shape):
    data: list[_OpenAIBucket]
    has_more: bool
    next_page: str | None = None


# --- HTTP with retries --------------------------------------------------------------------------------


def _api_message(response: httpx.Response) -> str:
    """Both providers answer errors as {"error": {"message": ...}} (Anthropic also adds "type")."""
    try:
        body = response.json()
        message = body["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    return " ".join(str(message).split())


class _Api(abc.ABC):
    name = "provider"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str,
        client: httpx.AsyncClient,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], float],
        max_retries: int = 3,
        backoff_initial_s: float = 1.0,
    ) -> None:
        self._key = api_key
        self._base = base_url.rstrip("/")
        self._client = client
        self._sleep = sleep
        self._now = now
        self._max_retries = max_retries
        self._backoff_initial_s = backoff_initial_s

    @abc.abstractmethod
    def _headers(self) -> dict[str, str]:
        """Authentication and version headers; never logged."""

    async def _get(self, path: str, params: list[tuple[str, str | int]]) -> Any:
        attempts = self._max_retries + 1

        def retried(error: Transient, attempt: int, wait_s: float) -> None:
            log.info("%s: %s on %s, retry %d in %.1f s", self.name, error.problem, path, attempt, wait_s)

        retry = retrying(attempts=attempts, initial_s=self._backoff_initial_s, sleep=self._sleep, on_retry=retried)
        try:
            return await retry(self._get_once, path, params)
        except Transient as exc:
            if exc.problem.startswith("HTTP"):
                raise ProviderError(f"{self.name}: {path} still failing after {attempts} attempts ({exc.problem})") from None
            raise ProviderError(f"{self.name}: cannot reach {self._base}: {exc.problem}") from None

    async def _get_once(self, path: str, params: list[tuple[str, str | int]]) -> Any:
        query: list[tuple[str, str | int | float | bool | None]] = list(params)
        try:
            response = await self._client.get(self._base + path, params=query, headers=self._headers())
        except httpx.HTTPError as exc:
            raise Transient(type(exc).__name__) from None
        status = response.status_code
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise ProviderError(f"{self.name}: {path} answered with something that is not JSON") from None
        if status in (401, 403):
            raise ProviderError(f"{self.name}: admin key rejected (HTTP {status}: {_api_message(response)})")
        if status == 429 or status >= 500:
            hinted = retry_after_seconds(response.headers.get("retry-after"), self._now()) if status == 429 else None
            raise Transient(f"HTTP {status}: {_api_message(response)}", min(hinted, MAX_RETRY_AFTER_S) if hinted is not None else None)
        raise ProviderError(f"{self.name}: {path} refused (HTTP {status}: {_api_message(response)})")

    async def _pages(self, path: str, params: list[tuple[str, str | int]], shape: type[BaseModel]) -> list[Any]:
        """Every bucket across pages, following has_more/next_page."""
        buckets: list[Any] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            body = await self._get(path, params + ([("page", cursor)] if cursor else []))
            try:
                page = shape.model_validate(body)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "response"
                raise ProviderError(f"{self.name}: unexpected response from {path}: {where}: {first['msg']}") from None
            buckets.extend(page.data)  # type: ignore[attr-defined]
            if not page.has_more:  # type: ignore[attr-defined]
                return buckets
            cursor = page.next_page  # type: ignore[attr-defined]
            if not cursor or cursor in seen:
                raise ProviderError(f"{self.name}: {path} says has_more but gives no new next_page")
            seen.add(cursor)
        raise ProviderError(f"{self.name}: {path} returned more than {MAX_PAGES} pages")


def _day_floor(ts: float) -> datetime:
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _day_ceil(ts: float) -> datetime:
    floor = _day_floor(ts)
    return floor if floor.timestamp() == ts else floor + timedelta(days=1)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class AnthropicAdmin(_Api):
    name = "anthropic"

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self._key, "anthropic-version": ANTHROPIC_VERSION}

    def _range(self, since: float, until: float) -> list[tuple[str, str | int]]:
        # Daily buckets snap to UTC midnight; whole days on both ends so each day is complete.
        return [("starting_at", _rfc3339(_day_floor(since))), ("ending_at", _rfc3339(_day_ceil(until))), ("bucket_width", "1d")]

    async def cost_report(self, since: float, until: float) -> list[ProviderCost]:
        params = self._range(since, until) + [("group_by[]", "description"), ("limit", 31)]
        rows: list[ProviderCost] = []
        for bucket in await self._pages("/v1/organizations/cost_report", params, _AnthropicPage):
            day = bucket.starting_at[:10]
            for raw in bucket.results:
                result = _parse(self.name, _AnthropicCostResult, raw)
                if result.currency.upper() != "USD":
                    raise ProviderError(f"{self.name}: cost in {result.currency}, only USD is supported")
                try:
                    cents = Decimal(result.amount)
                except InvalidOperation:
                    raise ProviderError(f"{self.name}: cost amount {result.amount!r} is not a number") from None
                rows.append(ProviderCost(self.name, day, result.model, float(cents / 100)))
        return rows

    async def usage_report(self, since: float, until: float) -> list[ProviderUsage]:
        params = self._range(since, until) + [("group_by[]", "model"), ("limit", 31)]
        rows: list[ProviderUsage] = []
        for bucket in await self._pages("/v1/organizations/usage_report/messages", params, _AnthropicPage):
            for raw in bucket.results:
                r = _parse(self.name, _AnthropicUsageResult, raw)
                rows.append(
                    ProviderUsage(
                        self.name,
                        bucket.starting_at[:10],
                        r.model,
                        r.uncached_input_tokens,
                        r.cache_creation.ephemeral_5m_input_tokens,
                        r.cache_creation.ephemeral_1h_input_tokens,
                        r.cache_read_input_tokens,
                        r.output_tokens,
                    )
                )
        return rows


class OpenAIAdmin(_Api):
    name = "openai"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"}

    async def costs(self, since: float, until: float) -> list[ProviderCost]:
        params: list[tuple[str, str | int]] = [
            ("start_time", int(_day_floor(since).timestamp())),
            ("end_time", int(_day_ceil(until).timestamp())),
            ("bucket_width", "1d"),
            ("group_by", "line_item"),
            ("limit", 180),
        ]
        rows: list[ProviderCost] = []
        for bucket in await self._pages("/v1/organization/costs", params, _OpenAIPage):
            day = datetime.fromtimestamp(bucket.start_time, tz=timezone.utc).strftime("%Y-%m-%d")
            for result in bucket.results:
                if result.amount.currency.lower() != "usd":
                    raise ProviderError(f"{self.name}: cost in {result.amount.currency}, only USD is supported")
                model = result.line_item.split(",")[0].strip() if result.line_item else None
                rows.append(ProviderCost(self.name, day, model, result.amount.value))
        return rows


def _parse(provider: str, shape: type[_Shape], raw: Any) -> Any:
    try:
        return shape.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ProviderError(f"{provider}: unexpected result: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


# --- the call the cost screen and the report make -----------------------------------------------------


async def fetch_provider_costs(
    config: ProviderCostConfig,
    since: float,
    until: float,
    *,
    now: Callable[[], float],
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    timeout_s: float = 30.0,
) -> ProviderCosts:
    """Ask every configured provider; one failing provider is reported in `errors`, not raised."""
    environ = os.environ if env is None else env
    result = ProviderCosts()
    wanted = [("anthropic", config.anthropic_admin_key_env, config.anthropic_base_url), ("openai", config.openai_admin_key_env, config.openai_base_url)]
    async with httpx.AsyncClient(timeout=timeout_s, transport=transport) as client:
        for name, key_env, base_url in wanted:
            if not key_env:
                continue
            key = environ.get(key_env)
            if not key:
                result.errors[name] = f"{name}: ${key_env} is not set (cost.providers.{name}_admin_key_env)"
                continue
            try:
                if name == "anthropic":
                    rows = await AnthropicAdmin(key, base_url=base_url, client=client, sleep=sleep, now=now).cost_report(since, until)
                else:
                    rows = await OpenAIAdmin(key, base_url=base_url, client=client, sleep=sleep, now=now).costs(since, until)
                result.rows.extend(rows)
            except ProviderError as exc:
                log.warning("%s", exc)
                result.errors[name] = str(exc)
    return result


@dataclass(frozen=True)
class ReconciledRow:
    key: str  # a day (YYYY-MM-DD) or a model name
    from_tokens_usd: float
    from_provider_usd: float | None  # None: no provider reported this key

    @property
    def difference_usd(self) -> float | None:
        return None if self.from_provider_usd is None else self.from_provider_usd - self.from_tokens_usd


def _reconcile(tokens: Mapping[str, float], provider: Mapping[str, float]) -> list[ReconciledRow]:
    keys = sorted(set(tokens) | set(provider))
    return [ReconciledRow(key, round(tokens.get(key, 0.0), 6), round(provider[key], 6) if key in provider else None) for key in keys]


def reconcile_by_day(token_cost_by_day: Mapping[str, float], provider_rows: Iterable[ProviderCost]) -> list[ReconciledRow]:
    """Two columns per UTC day: our cost from tokens x prices, and what the providers billed."""
    billed: dict[str, float] = defaultdict(float)
    for row in provider_rows:
        billed[row.day] += row.usd
    return _reconcile(token_cost_by_day, billed)


def reconcile_by_model(token_cost_by_model: Mapping[str, float], provider_rows: Iterable[ProviderCost]) -> list[ReconciledRow]:
    """Per model where the provider names one; provider costs without a model go under "(other)"."""
    billed: dict[str, float] = defaultdict(float)
    for row in provider_rows:
        billed[row.model or "(other)"] += row.usd
    return _reconcile(token_cost_by_model, billed)
