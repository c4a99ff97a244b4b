"""What the providers billed, beside the cost computed from tokens: when to ask again, the answer
kept between asks, and the "from provider" column of the costs screen. No Textual here; the app
runs the fetch in a worker and hands the answer over with `answered`/`failed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from ..config import ProviderCostConfig
from ..providers import ProviderCosts, ReconciledRow, reconcile_by_day, reconcile_by_model
from . import formatting as fmt

NOT_CONFIGURED = "from provider: not configured (set [cost.providers] anthropic_admin_key_env or openai_admin_key_env)"


def day_start(day: str) -> float:
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()


@dataclass
class ProviderBilling:
    config: ProviderCostConfig
    costs: ProviderCosts | None = None
    fetched_at: float | None = None  # console clock time of the last answer
    failure: str | None = None  # the last ask failed as a whole (one line)
    fetching: bool = False

    @property
    def configured(self) -> bool:
        return bool(self.config.anthropic_admin_key_env or self.config.openai_admin_key_env)

    def due(self, now: float) -> bool:
        """Time to ask (again): never asked, or the answer is `refresh_s` old."""
        if not self.configured or self.fetching:
            return False
        return self.fetched_at is None or now - self.fetched_at >= self.config.refresh_s

    @staticmethod
    def fetch_range(token_cost_by_day: Mapping[str, float], now: float) -> tuple[float, float]:
        """The days the cost engine has totals for (the providers widen to whole UTC days), so both
        columns cover the same calls."""
        first = min(token_cost_by_day) if token_cost_by_day else None
        since = day_start(first) if first is not None else now - 1.0
        return min(since, now - 1.0), now

    def started(self) -> None:
        self.fetching = True

    def answered(self, costs: ProviderCosts, now: float) -> None:
        self.costs, self.fetched_at, self.failure, self.fetching = costs, now, None, False

    def failed(self, line: str, now: float) -> None:
        self.fetched_at, self.failure, self.fetching = now, line, False

    def by_day(self, token_cost_by_day: Mapping[str, float]) -> list[ReconciledRow]:
        return reconcile_by_day(token_cost_by_day, self.costs.rows if self.costs else [])

    def by_model(self, token_cost_by_model: Mapping[str, float]) -> list[ReconciledRow]:
        return reconcile_by_model(token_cost_by_model, self.costs.rows if self.costs else [])

    def status_lines(self) -> list[tuple[str, str | None]]:
        """One line about the provider column, then one line per provider that could not be asked."""
        if not self.configured:
            return [(NOT_CONFIGURED, "muted")]
        if self.failure is not None:
            return [(f"from provider: {self.failure}", "critical")]
        if self.costs is None:
            return [("from provider: asking...", "muted")]
        asked = ", ".join(self.costs.providers) or "no provider reported costs"
        line = f"from provider: {asked} as of {fmt.clock_time(self.fetched_at)} UTC"
        if self.fetching:
            line += " (asking again...)"
        lines: list[tuple[str, str | None]] = [(line, "muted")]
        lines += [(error, "critical") for _, error in sorted(self.costs.errors.items())]
        return lines
