"""Cost: pricing table, per-call cost, totals, budgets, burn rate and projection.

Prices come from heady_tui/data/pricing-2026-11-01.json (the SOURCES.md table with its date);
cost.pricing_file overrides or extends it (same format; its models replace or add entries).
Token convention on the wire: `input_tokens` are uncached input only (Claude Code's meaning);
cache reads are `cache_read_tokens`. For OpenAI models cache_read is priced at the cached-input price.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from heady_agent.config import ConfigError
from heady_agent.protocol import LlmCallData
from heady_tui.config import CostConfig

PRICING_RESOURCE = "pricing-2026-11-01.json"
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
PER_TOKEN = 1e-6  # table prices are per million tokens
BUDGET_STEPS = (50, 80, 100)
BURN_WINDOW_S = 3600.0  # burn rate is $/h over the last hour
MATCH_CACHE_SIZE = 4096  # model names remembered; a stream of made-up names cannot grow it without bound
_DATED = re.compile(r"(-\d{8}|-\d{4}-\d{2}-\d{2}|@\d{8})$")


@dataclass(frozen=True)
class ModelPrice:
    key: str
    family: str
    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    long_context: dict[str, float] | None = None


@dataclass(frozen=True)
class PriceMatch:
    price: ModelPrice | None
    how: str  # exact | dated | family | unknown


def normalise(model: str) -> str:
    name = model.strip().lower()
    name = name.rsplit("/", 1)[-1]  # provider prefixes: anthropic/claude-..., openai/gpt-...
    return name.replace(".", "-")


class PricingTable:
    def __init__(self, raw: dict[str, Any], origin: str) -> None:
        try:
            self.date = str(raw.get("date", ""))
            self.long_context_threshold = int(raw.get("long_context_threshold_tokens", 200_000))
            self.fast_multiplier = float(raw.get("fast_mode_multiplier", 1.0))
            self.models: dict[str, ModelPrice] = {}
            for key, p in raw["models"].items():
                self.models[normalise(key)] = _model_price(key, p)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{origin}: bad pricing table: {exc}") from None
        self._families = sorted({m.family for m in self.models.values()}, key=len, reverse=True)
        self._matches: dict[str, PriceMatch] = {}  # a fleet uses a handful of model names, priced per call


    @classmethod
    def load(cls, config: CostConfig) -> "PricingTable":
        raw = json.loads((DATA_DIR / PRICING_RESOURCE).read_text())
        if config.pricing_file:
            path = Path(config.pricing_file).expanduser()
            try:
                extra = json.loads(path.read_text())
            except OSError as exc:
                raise ConfigError(f"cost.pricing_file: cannot read {path}: {exc.strerror}") from None
            except ValueError as exc:
                raise ConfigError(f"cost.pricing_file: {path} is not valid JSON: {exc}") from None
            if not isinstance(extra, dict) or not isinstance(extra.get("models", {}), dict):
                raise ConfigError(f"cost.pricing_file: {path} must be an object with a 'models' object")
            raw = {**raw, **{k: v for k, v in extra.items() if k != "models"}, "models": {**raw["models"], **extra.get("models", {})}}
            return cls(raw, str(path))
        return cls(raw, PRICING_RESOURCE)

    def match(self, model: str) -> PriceMatch:
        found = self._matches.get(model)
        if found is None:
            if len(self._matches) >= MATCH_CACHE_SIZE:
                self._matches.clear()
            found = self._matches[model] = self._match(model)
        return found

    def _match(self, model: str) -> PriceMatch:
        name = normalise(model)
        if name in self.models:
            return PriceMatch(self.models[name], "exact")
        stripped = _DATED.sub("", name)
        if stripped in self.models:
            return PriceMatch(self.models[stripped], "dated")
        for family in self._families:
            if stripped.startswith(normalise(family)):
                members = [m for m in self.models.values() if m.family == family]
                return PriceMatch(max(members, key=lambda m: m.key), "family")
        return PriceMatch(None, "unknown")

    def cost(self, call: LlmCallData) -> tuple[float, bool]:
        """(cost_usd, known); an unknown model costs 0 and is flagged (known=False)."""
        if call.cost_usd is not None:
            return call.cost_usd, True
        price = self.match(call.model).price
        if price is None:
            return 0.0, False
        cache_total = call.cache_creation_tokens
        if call.cache_creation_5m_tokens is None and call.cache_creation_1h_tokens is None:
            w5, w1 = cache_total, 0  # no split: all of it at the 5-minute price
        else:
            w1 = call.cache_creation_1h_tokens or 0
            w5 = call.cache_creation_5m_tokens if call.cache_creation_5m_tokens is not None else max(0, cache_total - w1)
        rates = {"input": price.input, "output": price.output, "cache_write_5m": price.cache_write_5m,
                 "cache_write_1h": price.cache_write_1h, "cache_read": price.cache_read}
        context = call.input_tokens + call.cache_creation_tokens + call.cache_read_tokens
        if price.long_context and context > self.long_context_threshold:
            scale = price.long_context["input"] / price.input
            # No long-context 1h cache-write price is published: scale the base one like input.
            rates = {k: price.long_context.get(k, v * scale) for k, v in rates.items()}
        total = (
            call.input_tokens * rates["input"]
            + call.output_tokens * rates["output"]
            + w5 * rates["cache_write_5m"]
            + w1 * rates["cache_write_1h"]
            + call.cache_read_tokens * rates["cache_read"]
        ) * PER_TOKEN
        if call.speed == "fast":
            total *= self.fast_multiplier
        return total, True


def _model_price(key: str, p: dict[str, Any]) -> ModelPrice:
    base_in = float(p["input"])
    return ModelPrice(
        key=key,
        family=str(p.get("family", key)),
        input=base_in,
        output=float(p["output"]),
        cache_write_5m=float(p.get("cache_write_5m", base_in)),
        cache_write_1h=float(p.get("cache_write_1h", p.get("cache_write_5m", base_in))),
        cache_read=float(p.get("cache_read", base_in)),
        long_context={k: float(v) for k, v in p["long_context"].items()} if p.get("long_context") else None,
    )


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m")


def seconds_left_in_day(ts: float) -> float:
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return 86400 - (moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6)


@dataclass(frozen=True)
class BudgetNotice:
    budget: str  # daily | monthly
    period: str  # 2026-11-21 | 2026-11
    percent: int  # 50 | 80 | 100
    spent_usd: float
    budget_usd: float


@dataclass
class CostSummary:
    today_usd: float
    month_usd: float
    burn_rate_usd_per_h: float
    projected_today_usd: float  # today + burn rate x hours left in the (UTC) day
    daily_budget_usd: float | None
    monthly_budget_usd: float | None
    by_model: dict[str, float]
    by_node: dict[str, float]
    by_project: dict[str, float]
    by_day: dict[str, float]
    by_session: dict[str, float]  # "node/session" -> usd
    unknown_models: list[str]
    calls: int
    pricing_date: str


@dataclass
class CostTracker:
    """Totals of priced calls. Days and months are UTC."""

    daily_budget_usd: float | None = None
    monthly_budget_usd: float | None = None
    pricing_date: str = ""
    by_model: dict[str, float] = field(default_factory=dict)
    by_node: dict[str, float] = field(default_factory=dict)
    by_project: dict[str, float] = field(default_factory=dict)
    by_day: dict[str, float] = field(default_factory=dict)
    by_month: dict[str, float] = field(default_factory=dict)
    by_session: dict[str, float] = field(default_factory=dict)
    unknown_models: set[str] = field(default_factory=set)
    calls: int = 0
    notices_sent: set[tuple[str, str, int]] = field(default_factory=set)
    _recent: deque[tuple[float, float]] = field(default_factory=deque)
    _recent_usd: float = 0.0  # running sum of _recent, so the burn rate is not a rescan of the hour
    # The UTC day that holds the last call priced, with its day and month keys: formatting a date
    # for every call cost more than the rest of the bookkeeping.
    _day_span: tuple[float, float, str, str] = (0.0, 0.0, "", "")

    @classmethod
    def from_config(cls, config: CostConfig, pricing_date: str) -> "CostTracker":
        return cls(config.daily_budget_usd, config.monthly_budget_usd, pricing_date)

    def add(self, *, ts: float, node: str, session: str | None, project: str | None, model: str, cost_usd: float, known: bool) -> None:
        self.calls += 1
        if not known:
            self.unknown_models.add(model)
        start, end, day, month = self._day_span
        if not start <= ts < end:
            day, month = day_of(ts), month_of(ts)
            start = ts - (ts % 86400)  # UTC days are 86,400 s long in epoch time (no leap seconds)
            self._day_span = (start, start + 86400, day, month)
        # Spelled out rather than looped over: this runs for every call the fleet makes.
        self.by_model[model] = self.by_model.get(model, 0.0) + cost_usd
        self.by_node[node] = self.by_node.get(node, 0.0) + cost_usd
        key = project or "(none)"
        self.by_project[key] = self.by_project.get(key, 0.0) + cost_usd
        self.by_day[day] = self.by_day.get(day, 0.0) + cost_usd
        self.by_month[month] = self.by_month.get(month, 0.0) + cost_usd
        key = f"{node}/{session or '-'}"
        self.by_session[key] = self.by_session.get(key, 0.0) + cost_usd
        self._recent.append((ts, cost_usd))
        self._recent_usd += cost_usd

    def burn_rate(self, now: float) -> float:
        recent = self._recent
        while recent and recent[0][0] < now - BURN_WINDOW_S:
            self._recent_usd -= recent.popleft()[1]
        if not recent:
            self._recent_usd = 0.0  # no float drift carried over from calls long gone
        # Calls stamped after `now` (a node's clock ahead) are not burnt yet; they arrive last.
        ahead = 0.0
        for ts, cost in reversed(recent):
            if ts <= now:
                break
            ahead += cost
        return max(0.0, self._recent_usd - ahead) * 3600.0 / BURN_WINDOW_S

    def projected_today(self, now: float) -> float:
        """Today's spend plus the burn rate over the hours left in the UTC day (summary() without the copies)."""
        return self.by_day.get(day_of(now), 0.0) + self.burn_rate(now) * seconds_left_in_day(now) / 3600.0

    def summary(self, now: float) -> CostSummary:
        today = self.by_day.get(day_of(now), 0.0)
        burn = self.burn_rate(now)
        return CostSummary(
            today_usd=today,
            month_usd=self.by_month.get(month_of(now), 0.0),
            burn_rate_usd_per_h=burn,
            projected_today_usd=today + burn * seconds_left_in_day(now) / 3600.0,
            daily_budget_usd=self.daily_budget_usd,
            monthly_budget_usd=self.monthly_budget_usd,
            by_model=dict(self.by_model),
            by_node=dict(self.by_node),
            by_project=dict(self.by_project),
            by_day=dict(sorted(self.by_day.items())),
            by_session=dict(self.by_session),
            unknown_models=sorted(self.unknown_models),
            calls=self.calls,
            pricing_date=self.pricing_date,
        )

    def budget_notices(self, now: float) -> list[BudgetNotice]:
        """Notices due now: each of 50/80/100 % once per budget and period."""
        due = []
        for budget, limit, period, spent in (
            ("daily", self.daily_budget_usd, day_of(now), self.by_day.get(day_of(now), 0.0)),
            ("monthly", self.monthly_budget_usd, month_of(now), self.by_month.get(month_of(now), 0.0)),
        ):
            if not limit:
                continue
            for pct in BUDGET_STEPS:
                key = (budget, period, pct)
                if spent >= limit * pct / 100 and key not in self.notices_sent:
                    self.notices_sent.add(key)
                    due.append(BudgetNotice(budget, period, pct, spent, limit))
        return due
