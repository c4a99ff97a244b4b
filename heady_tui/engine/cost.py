"""Cost: pricing table, per-call cost, totals, budgets, burn rate and projection.

Prices come from heady_tui/data/pricing-2026-11-01.json (the SOURCES.md table with its date);
cost.pricing_file overrides or extends it (same format; its models replace or add entries).
Token convention on the wire: `input_tokens` are uncached input only (Claude Code's meaning);
cache reads are `cache_read_tokens`. For OpenAI models cache_read is priced at the cached-input price.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from heady_agent.config import ConfigError
from heady_agent.protocol import LlmCallData
from heady_tui.config import CostConfig
from heady_tui.ledger import cache_write_split, day_of

PRICING_RESOURCE = "pricing-2026-11-01.json"
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
PER_TOKEN = 1e-6  # table prices are per million tokens
BUDGET_STEPS = (50, 80, 100)
BURN_WINDOW_S = 600.0  # burn rate is $/h over the last 10 minutes unless [cost] burn_window_s says otherwise
# A rate needs some time behind it: one call a second ago is not an hourly rate of that call x 3600.
MIN_BURN_SPAN_S = 60.0
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
        # The table's date names it; the digest tells a pricing_file's edits apart.
        digest = hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:8]
        self.version = f"{self.date}+{digest}"
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
        """(cost_usd, known) from this table; an unknown model costs 0 and is flagged (known=False).

        A cost the agent reported is not used here: the ledger keeps it beside this one.
        """
        price = self.match(call.model).price
        if price is None:
            return 0.0, False
        w5, w1 = cache_write_split(call)
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


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m")


def seconds_left_in_day(ts: float) -> float:
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return 86400 - (moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6)


def seconds_left_in_month(ts: float) -> float:
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return following.timestamp() - ts


@dataclass(frozen=True)
class BudgetNotice:
    budget: str  # daily | monthly
    period: str  # 2026-11-21 | 2026-11
    percent: int  # 50 | 80 | 100
    spent_usd: float
    budget_usd: float


@dataclass(frozen=True)
class BurnNotice:
    """A session or the fleet burning faster than its configured $/h."""

    scope: str  # session | fleet
    node: str | None
    session: str | None
    rate_usd_per_h: float
    limit_usd_per_h: float

    @property
    def subject(self) -> str:
        return f"{self.node}/{self.session}" if self.scope == "session" else "fleet"


@dataclass
class CostSummary:
    today_usd: float
    month_usd: float
    burn_rate_usd_per_h: float  # the fleet's, over the burn window
    burn_window_s: float
    projected_today_usd: float  # today + burn rate x hours left in the (UTC) day
    projected_month_usd: float  # this month + burn rate x hours left in the (UTC) month
    daily_budget_usd: float | None
    monthly_budget_usd: float | None
    by_model: dict[str, float]
    by_node: dict[str, float]
    by_project: dict[str, float]
    by_day: dict[str, float]
    by_session: dict[str, float]  # "node/session" -> usd
    today_by_node: dict[str, float]
    burn_by_node: dict[str, float]
    burn_by_session: dict[str, float]  # "node/session" -> $/h, sessions with calls in the window
    over_burn: list[BurnNotice]  # sessions and the fleet over their $/h limit now
    unknown_models: list[str]
    calls: int
    pricing_date: str


SessionKey = tuple[str, str]  # (node, session id; "-" for calls outside a session)


@dataclass(frozen=True)
class BurnRates:
    """$/h now: per session with calls in the window, per node, and the fleet's."""

    fleet: float
    by_node: dict[str, float]
    by_session: dict[SessionKey, float]


@dataclass
class CostTracker:
    """Totals of stored (already priced) calls, and burn rates over a sliding window. Days and months are UTC.

    Totals start from the store's daily rollups and grow with each call stored after; nothing is priced here.
    """

    daily_budget_usd: float | None = None
    monthly_budget_usd: float | None = None
    pricing_date: str = ""
    burn_window_s: float = BURN_WINDOW_S
    max_burn_usd_per_h: float | None = None
    max_session_burn_usd_per_h: float | None = None
    by_model: dict[str, float] = field(default_factory=dict)
    by_node: dict[str, float] = field(default_factory=dict)
    by_project: dict[str, float] = field(default_factory=dict)
    by_day: dict[str, float] = field(default_factory=dict)
    by_month: dict[str, float] = field(default_factory=dict)
    by_day_node: dict[tuple[str, str], float] = field(default_factory=dict)
    by_session: dict[str, float] = field(default_factory=dict)
    unknown_models: set[str] = field(default_factory=set)
    calls: int = 0
    notices_sent: set[tuple[str, str, int]] = field(default_factory=set)
    # The burn window: (ts, "node/session", usd) oldest first, with running sums per session so a
    # rate is not a rescan of the window.
    _recent: deque[tuple[float, SessionKey, float]] = field(default_factory=deque)
    _window_usd: dict[SessionKey, float] = field(default_factory=lambda: defaultdict(float))
    _window_calls: dict[SessionKey, int] = field(default_factory=lambda: defaultdict(int))
    _first_seen: dict[SessionKey, float] = field(default_factory=dict)  # a session's first activity: how long it has burnt
    _burning: set[str] = field(default_factory=set)  # subjects over their limit, noticed once per crossing
    # The UTC day that holds the last call added, with its day and month keys: formatting a date
    # for every call cost more than the rest of the bookkeeping.
    _day_span: tuple[float, float, str, str] = (0.0, 0.0, "", "")

    @classmethod
    def from_config(cls, config: CostConfig, pricing_date: str) -> "CostTracker":
        return cls(config.daily_budget_usd, config.monthly_budget_usd, pricing_date, config.burn_window_s,
                   config.max_burn_usd_per_h, config.max_session_burn_usd_per_h)  # fmt: skip

    def _days(self, ts: float) -> tuple[str, str]:
        start, end, day, month = self._day_span
        if not start <= ts < end:
            day, month = day_of(ts), month_of(ts)
            start = ts - (ts % 86400)  # UTC days are 86,400 s long in epoch time (no leap seconds)
            self._day_span = (start, start + 86400, day, month)
        return day, month

    def add_total(self, *, day: str, node: str, project: str | None, model: str, calls: int, unpriced: int, cost_usd: float) -> None:
        """A stored daily rollup (the store's cost_days row): totals only, not the burn window."""
        self.calls += calls
        if unpriced:
            self.unknown_models.add(model)
        self.by_model[model] = self.by_model.get(model, 0.0) + cost_usd
        self.by_node[node] = self.by_node.get(node, 0.0) + cost_usd
        key = project or "(none)"
        self.by_project[key] = self.by_project.get(key, 0.0) + cost_usd
        self.by_day[day] = self.by_day.get(day, 0.0) + cost_usd
        self.by_month[day[:7]] = self.by_month.get(day[:7], 0.0) + cost_usd
        self.by_day_node[(day, node)] = self.by_day_node.get((day, node), 0.0) + cost_usd

    def add_session(self, node: str, session: str, cost_usd: float, first_activity: float | None) -> None:
        """A stored session's cost so far and when it began (its burn rate counts from then)."""
        self.by_session[f"{node}/{session}"] = cost_usd
        if first_activity is not None:
            key = (node, session)
            self._first_seen[key] = min(self._first_seen.get(key, first_activity), first_activity)

    def add_recent(self, *, ts: float, node: str, session: str | None, cost_usd: float) -> None:
        """A call inside the burn window (its totals already counted)."""
        key = (node, session or "-")
        self._recent.append((ts, key, cost_usd))
        self._window_usd[key] += cost_usd
        self._window_calls[key] += 1
        if key not in self._first_seen or ts < self._first_seen[key]:
            self._first_seen[key] = ts

    def add(self, *, ts: float, node: str, session: str | None, project: str | None, model: str, cost_usd: float, known: bool) -> None:
        """A call just stored: its totals and the burn window."""
        day, _ = self._days(ts)
        self.add_total(day=day, node=node, project=project, model=model, calls=1, unpriced=0 if known else 1, cost_usd=cost_usd)
        key = f"{node}/{session or '-'}"
        self.by_session[key] = self.by_session.get(key, 0.0) + cost_usd
        self.add_recent(ts=ts, node=node, session=session, cost_usd=cost_usd)

    def _expire(self, now: float) -> None:
        recent = self._recent
        cutoff = now - self.burn_window_s
        while recent and recent[0][0] < cutoff:
            _, key, usd = recent.popleft()
            self._window_calls[key] -= 1
            if self._window_calls[key]:
                self._window_usd[key] -= usd
            else:  # no float drift carried over from calls long gone
                del self._window_calls[key], self._window_usd[key]

    def rates(self, now: float) -> BurnRates:
        """$/h per session, node and fleet. A session's rate is its spend in the window over the time
        it has been burning within it (at least MIN_BURN_SPAN_S), so a session that began a minute
        ago is not averaged over the whole window; a node's and the fleet's are their sessions' sums.
        """
        self._expire(now)
        spent = dict(self._window_usd)
        # Calls stamped after `now` (a node's clock ahead) are not burnt yet; they arrive last.
        for ts, key, usd in reversed(self._recent):
            if ts <= now:
                break
            spent[key] -= usd
        by_session: dict[SessionKey, float] = {}
        by_node: dict[str, float] = {}
        for key, usd in spent.items():
            began = self._first_seen.get(key, now - self.burn_window_s)
            span = min(self.burn_window_s, max(MIN_BURN_SPAN_S, now - began))
            rate = by_session[key] = max(0.0, usd) * 3600.0 / span
            by_node[key[0]] = by_node.get(key[0], 0.0) + rate
        return BurnRates(sum(by_session.values()), by_node, by_session)

    def burn_rate(self, now: float) -> float:
        """The fleet's $/h."""
        return self.rates(now).fleet

    def projected_today(self, now: float) -> float:
        """Today's spend plus the burn rate over the hours left in the UTC day."""
        return self.by_day.get(day_of(now), 0.0) + self.burn_rate(now) * seconds_left_in_day(now) / 3600.0

    def today_by_node(self, now: float) -> dict[str, float]:
        day = day_of(now)
        return {node: usd for (d, node), usd in self.by_day_node.items() if d == day}

    def _over(self, rates: BurnRates) -> list[BurnNotice]:
        over = []
        if self.max_burn_usd_per_h is not None and rates.fleet >= self.max_burn_usd_per_h:
            over.append(BurnNotice("fleet", None, None, rates.fleet, self.max_burn_usd_per_h))
        if self.max_session_burn_usd_per_h is not None:
            for (node, session), rate in rates.by_session.items():
                if rate >= self.max_session_burn_usd_per_h:
                    over.append(BurnNotice("session", node, session, rate, self.max_session_burn_usd_per_h))
        return sorted(over, key=lambda n: -n.rate_usd_per_h)

    def over_burn(self, now: float) -> list[BurnNotice]:
        """Sessions and the fleet over their $/h limit now, fastest first."""
        return self._over(self.rates(now))

    def burn_notices(self, now: float) -> list[BurnNotice]:
        """Sessions and the fleet that went over their $/h limit since the last call: once per crossing."""
        over = self._over(self.rates(now))
        keys = {n.subject for n in over}
        due = [n for n in over if n.subject not in self._burning]
        self._burning = keys
        return due

    def summary(self, now: float) -> CostSummary:
        today = self.by_day.get(day_of(now), 0.0)
        month = self.by_month.get(month_of(now), 0.0)
        rates = self.rates(now)
        burn = rates.fleet
        return CostSummary(
            today_usd=today,
            month_usd=month,
            burn_rate_usd_per_h=burn,
            burn_window_s=self.burn_window_s,
            projected_today_usd=today + burn * seconds_left_in_day(now) / 3600.0,
            projected_month_usd=month + burn * seconds_left_in_month(now) / 3600.0,
            daily_budget_usd=self.daily_budget_usd,
            monthly_budget_usd=self.monthly_budget_usd,
            by_model=dict(self.by_model),
            by_node=dict(self.by_node),
            by_project=dict(self.by_project),
            by_day=dict(sorted(self.by_day.items())),
            by_session=dict(self.by_session),
            today_by_node=self.today_by_node(now),
            burn_by_node=rates.by_node,
            burn_by_session={f"{node}/{session}": rate for (node, session), rate in rates.by_session.items()},
            over_burn=self._over(rates),
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
