"""Reads the console's fleet and brain into what the screens show.

The one place the UI touches the console's data model (`backend.ConsoleBackend`: this process's
supervisor, or a headless console attached to); screens ask it for rows and lines.
"""

from __future__ import annotations

from ..accounts import AccountWindow
from ..config import Config
from ..fleet import Fleet, SessionRecord
from . import formatting as fmt
from . import views
from .backend import BrainReads, ConsoleBackend
from .widgets.panels import MetricLine, budget_line

METRIC_LABELS = {
    "node_load_variance": "load variance",
    "task_queue_depth": "queue depth",
    "error_rate": "error rate",
    "response_time_p95": "latency p95",
}
METRIC_SHORT = {"node_load_variance": "loadvar", "task_queue_depth": "queue", "error_rate": "errors", "response_time_p95": "p95"}


class FleetReader:
    def __init__(self, supervisor: ConsoleBackend, config: Config) -> None:
        self.supervisor = supervisor
        self.config = config
        self._node_rows = views.NodeRows()

    @property
    def fleet(self) -> Fleet:
        return self.supervisor.fleet

    @property
    def brain(self) -> BrainReads | None:
        return self.supervisor.brain

    @property
    def simulated(self) -> bool:
        return self.supervisor.simulated or any(
            n.simulated for n in self.fleet.nodes.values()
        )

    def now(self) -> float:
        return self.supervisor.clock.now()

    def stamp(self) -> tuple:
        """Changes whenever anything shown may have changed; equal stamps skip a refresh."""
        # A new equilibrium reading is a new object: its id changes on every evaluation.
        return (self.fleet.version, id(self.reading()))

    def online_count(self) -> int:
        return sum(1 for n in self.fleet.nodes.values() if n.status == "online")

    def session_counts(self) -> tuple[int, int]:
        """(live, unknown) sessions: live ones are known to be so; unknown ones are on silent nodes."""
        live = unknown = 0
        for rec in self.fleet.sessions.values():
            if rec.live:
                live += 1
            elif rec.active:
                unknown += 1
        return live, unknown

    # --- equilibrium -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """False until the supervisor has started its brain (the first moments of a run)."""
        return self.brain is not None

    def reading(self):
        """The latest EquilibriumReading; None before the brain's first evaluation."""
        return self.brain.equilibrium() if self.brain is not None else None

    def level(self) -> str:
        reading = self.reading()
        return reading.level if reading is not None else "unknown"

    def metric_lines(self) -> list[MetricLine]:
        reading = self.reading()
        if reading is None:
            return []
        lines = []
        for name, label in METRIC_LABELS.items():
            metric = reading.metrics.get(name)
            if metric is None:
                continue
            if metric.value is None:
                severity, state = "muted", "no data"
            else:
                severity = fmt.threshold_severity(metric.value, metric.threshold, metric.critical)
                if metric.state == "firing":
                    severity = fmt.level_severity(metric.level)
                state = metric.state if metric.state != "firing" else metric.level
            trend = ""
            # The engine projects every metric's trend, noise included; a projection is shown only
            # for a metric already off balance (pending or firing) whose trend points at critical.
            toward = (metric.trend_per_min or 0.0) > 0
            off_balance = metric.level != "balanced" or metric.state == "pending"
            if metric.seconds_to_critical is not None and metric.seconds_to_critical > 0 and toward and off_balance:
                trend = f"critical in {fmt.duration(metric.seconds_to_critical)}"
            lines.append(
                MetricLine(
                    name=name,
                    label=label,
                    short=METRIC_SHORT[name],
                    value=metric.value,
                    threshold=metric.threshold,
                    critical=metric.critical,
                    severity=severity,
                    state=state,
                    history=[value for _, value in metric.history],
                    trend=trend,
                )
            )
        return lines

    def acting_brain(self) -> str | None:
        """The holder of the fleet's lease when this console's brain is view-only; None when it acts."""
        view = self.brain.lease_view() if self.brain is not None else None
        return view.holder if view is not None and view.role != "acting" else None

    def rebalance(self):
        """The current or last RebalanceStatus, None when there was none."""
        return self.brain.rebalance_status() if self.brain is not None else None

    def rebalance_line(self) -> tuple[str, str | None]:
        return views.rebalance_line(self.rebalance(), self.config.rebalance.balanced_checks)

    def metric_levels(self) -> dict[str, tuple[float, float]]:
        detector = self.config.detector
        return {name: (getattr(detector, name).threshold, getattr(detector, name).critical) for name in METRIC_LABELS}

    # --- nodes and sessions ------------------------------------------------------------

    def costs_today(self) -> dict[str, float]:
        """Today's cost per node from the cost ledger (the store's daily rollups), not a call ring."""
        return self.brain.costs_today_by_node() if self.brain is not None else {}

    def node_rows(self, *, spark_width: int, compact: bool, ascii_only: bool = False):
        return self._node_rows.rows(
            self.fleet,
            self.now(),
            costs_today=self.costs_today(),
            spark_width=spark_width,
            compact=compact,
            ascii_only=ascii_only,
        )

    @staticmethod
    def session_matches(rec: SessionRecord, text: str) -> bool:
        text = text.lower()
        fields = (rec.node, rec.id, rec.source, rec.project, rec.model, rec.state, rec.title)
        return any(text in (value or "").lower() for value in fields)

    # --- costs -------------------------------------------------------------------------

    def node_detail(self, node_id: str) -> list:
        detail = self.supervisor.details.get(node_id)
        return list(detail.processes) if detail is not None else []

    def burn_alert(self) -> str | None:
        """The header's alert when a session or the fleet burns over its configured $/h."""
        over = self.brain.burn_alerts() if self.brain is not None else []
        if not over:
            return None
        top = over[0]
        more = f" +{len(over) - 1}" if len(over) > 1 else ""
        return f"BURN {top.subject} {fmt.money(top.rate_usd_per_h)}/h > {fmt.money(top.limit_usd_per_h)}/h{more}"

    def cost_summary(self):
        return self.brain.cost_summary() if self.brain is not None else None

    def accounts(self) -> list[AccountWindow]:
        """Each account's windows as the brain last derived them (empty before the first refresh)."""
        return self.brain.accounts() if self.brain is not None else []

    def cost_lines(self, *, compact: bool, ascii_only: bool) -> list[list[tuple[str, str | None]]]:
        summary = self.cost_summary()
        if summary is None:
            return [[("starting...", "muted")]]
        bar_width = 10 if compact else 16
        lines: list[list[tuple[str, str | None]]] = [
            [
                (f"today {fmt.money(summary.today_usd)}", None),
                (f"  burn {fmt.money(summary.burn_rate_usd_per_h)}/h over {fmt.duration(summary.burn_window_s)}",
                 "critical" if summary.over_burn else None),
            ],
            [(f"projected end of day {fmt.money(summary.projected_today_usd)}, of month {fmt.money(summary.projected_month_usd)}", None)],
            budget_line("day  ", summary.today_usd, summary.daily_budget_usd, bar_width, ascii_only),
            budget_line("month", summary.month_usd, summary.monthly_budget_usd, bar_width, ascii_only),
        ]
        top = sorted(summary.by_model.items(), key=lambda item: -item[1])[: 2 if compact else 4]
        for model, cost in top:
            lines.append([(f"{model[:24]:<24} {fmt.money(cost):>8}", None)])
        if summary.unknown_models:
            lines.append([(f"unpriced: {', '.join(sorted(summary.unknown_models))}", "warning")])
        return lines
