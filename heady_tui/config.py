"""config.toml for the console: pydantic models, loading, and where files live.

Every key is documented in config.example.toml. The `[agent]` section belongs to heady-agent and is
validated by its own model (heady_agent.config.AgentConfig).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from heady_agent.config import (
    AgentConfig,
    ConfigError,
    config_path,
    data_dir,
    read_token,
    read_toml,
    validation_message,
)

__all__ = ["Config", "ConfigError", "Paths", "load_config", "STRATEGIES", "PRIORITY_CLASSES", "PriorityClass"]

# Healing strategies the loop knows; `healing.auto_dispatch` may name only these.
STRATEGIES = ("revive_agent", "repair_endpoint", "environment_sync", "optimize_sessions", "cost_control")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeConfig(_Section):
    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^wss?://")
    token: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    ca_file: str | None = None  # extra CA bundle for wss:// (self-signed fleets)
    # Turns off certificate verification for this node; logged loudly at every connect.
    insecure_skip_verify: bool = False
    # Seconds without frames after which the node is offline and its sessions unknown
    # (default [liveness] timeout_s); agents send metrics every interval_s, so a few intervals.
    timeout_s: float | None = Field(default=None, gt=0)

    def resolve_token(self) -> str | None:
        return read_token(self.token, self.token_file, self.token_env, where=f"nodes.{self.name}", env_required=True)


class PrometheusConfig(_Section):
    """A Prometheus server whose node_exporter targets join the fleet as metrics-only nodes."""

    url: str = Field(pattern=r"^https?://")
    selector: str = ""  # label matchers, e.g. job="node"
    token_env: str | None = None
    token_file: str | None = None
    ca_file: str | None = None  # extra CA bundle for https:// with a private CA
    interval_s: float = Field(default=15.0, gt=0)  # seconds between polls; match the scrape interval
    # Seconds without a sample after which the node is offline (default: three polls).
    timeout_s: float | None = Field(default=None, gt=0)

    def resolve_token(self) -> str | None:
        return read_token(None, self.token_file, self.token_env, where=f"prometheus {self.url}", env_required=True)


class MetricLevels(_Section):
    threshold: float = Field(ge=0)
    critical: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "MetricLevels":
        if self.critical < self.threshold:
            raise ValueError(f"critical ({self.critical}) must not be below threshold ({self.threshold})")
        return self


class DetectorConfig(_Section):
    node_load_variance: MetricLevels = MetricLevels(threshold=0.3, critical=0.6)
    task_queue_depth: MetricLevels = MetricLevels(threshold=500, critical=1000)
    error_rate: MetricLevels = MetricLevels(threshold=0.05, critical=0.10)
    response_time_p95: MetricLevels = MetricLevels(threshold=2000, critical=4000)
    evaluation_interval_s: float = Field(default=2.0, gt=0)
    for_seconds: float = Field(default=10.0, ge=0)
    clear_seconds: float = Field(default=15.0, ge=0)
    keep_firing_seconds: float = Field(default=10.0, ge=0)
    # A firing level is left only below entry x exit_ratio (the lower exit value).
    exit_ratio: float = Field(default=0.9, gt=0, le=1)
    window_s: float = Field(default=60.0, gt=0)
    min_calls: int = Field(default=20, ge=1)
    trend_window_s: float = Field(default=300.0, gt=0)  # slope and time-to-critical look this far back


class RebalanceConfig(_Section):
    enabled: bool = True
    auto_activate: bool = False
    max_cpu_percent: float = Field(default=80, gt=0, le=100)
    max_memory_mb: float = Field(default=2048, ge=0)
    max_duration_s: float = Field(default=300, gt=0)
    auto_shutdown_on_balance: bool = True
    balanced_checks: int = Field(default=3, ge=1)
    step_interval_s: float = Field(default=2.0, gt=0)
    max_moves_per_step: int = Field(default=200, ge=1)
    # Run priority (DESIGN.md): high when variance or P95 exceed these (critical comes from [detector]).
    high_variance: float = Field(default=0.5, ge=0)
    high_p95_ms: float = Field(default=5000, ge=0)


class ConsentConfig(_Section):
    deny_snooze_s: float = Field(default=600, ge=0)
    session_hours: float = Field(default=24, gt=0)
    request_timeout_s: float = Field(default=900, gt=0)  # an unanswered request expires


class PolicyConfig(_Section):
    enabled: bool = True
    max_retries: int = Field(default=3, ge=0)
    reset_window_s: float = Field(default=3600, gt=0)
    backoff_initial_s: float = Field(default=10, ge=0)
    backoff_max_s: float = Field(default=300, ge=0)


class ResumeOnIdleConfig(PolicyConfig):
    idle_threshold_s: float = Field(default=300, gt=0)
    prompt: str = "continue"


class RestartOnCompactionConfig(PolicyConfig):
    max_retries: int = Field(default=2, ge=0)


class KillOnCostConfig(PolicyConfig):
    max_retries: int = Field(default=1, ge=0)
    max_session_cost_usd: float = Field(default=20.0, gt=0)


class LimitGuardConfig(_Section):
    """An account near its limit: a notice at warn_share of a window, and at pause_share a consent
    request to pause the account's running sessions until the window resets."""

    enabled: bool = True
    warn_share: float = Field(default=0.8, gt=0, le=1)
    pause_share: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> "LimitGuardConfig":
        if self.pause_share < self.warn_share:
            raise ValueError("pause_share must not be below warn_share")
        return self


class PoliciesConfig(_Section):
    resume_on_idle: ResumeOnIdleConfig = Field(default_factory=ResumeOnIdleConfig)
    restart_on_compaction: RestartOnCompactionConfig = Field(default_factory=RestartOnCompactionConfig)
    kill_on_cost: KillOnCostConfig = Field(default_factory=KillOnCostConfig)
    limit_guard: LimitGuardConfig = Field(default_factory=LimitGuardConfig)


class AccountBudgetConfig(_Section):
    """What one account may spend per window, for windows no client reports (the estimate's 100 %)."""

    five_hour_usd: float | None = Field(default=None, gt=0)
    weekly_usd: float | None = Field(default=None, gt=0)


class LimitsConfig(_Section):
    refresh_s: float = Field(default=30.0, gt=0)  # how often the account windows are derived again
    burn_window_s: float = Field(default=1800.0, gt=0, le=86400)  # the burn rate's sliding window
    # Budgets per account id as sessions name it, e.g. [limits.accounts."claude:ana@example.com"].
    accounts: dict[str, AccountBudgetConfig] = Field(default_factory=dict)


class HealingTriggersConfig(_Section):
    """The session-efficiency thresholds (the healing guide's seven triggers), judged per session
    over the healing window in every full cycle."""

    slow_turn_s: float = Field(default=60, gt=0)  # a turn (call) that took at least this long
    retries: int = Field(default=3, ge=1)  # failed calls in a row
    error_rate: float = Field(default=0.2, gt=0, le=1)  # share of failed calls, at least this
    token_increase_percent: float = Field(default=300, gt=0)  # tokens per call up by at least this over the baseline
    cost_per_task_usd: float = Field(default=0.5, ge=0)  # a task (one call) costing more than this, on average
    test_failure_rate: float = Field(default=0.05, ge=0, lt=1)  # share of failed test runs, more than this
    duration_percent: float = Field(default=150, gt=100)  # turns taking at least this % of the baseline


class HealingConfig(_Section):
    light_interval_s: float = Field(default=30, gt=0)
    full_interval_s: float = Field(default=300, gt=0)
    group_wait_s: float = Field(default=30, ge=0)
    max_tasks_per_node: int = Field(default=2, ge=1)
    trigger_every_calls: int = Field(default=500, ge=1)
    trigger_error_rate: float = Field(default=0.2, ge=0, le=1)
    task_expiry_s: float = Field(default=3600, gt=0)
    auto_dispatch: list[str] = Field(default_factory=lambda: ["revive_agent", "environment_sync"])
    triggers: HealingTriggersConfig = Field(default_factory=HealingTriggersConfig)

    @field_validator("auto_dispatch")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in STRATEGIES:
                raise ValueError(f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
        return value


PRIORITY_CLASSES = ("high", "normal", "background")
PriorityClass = Literal["high", "normal", "background"]


class PriorityRule(_Section):
    """Sessions matching every key given (shell-style patterns, `label` as key=value of the node's
    labels) get `priority_class`; the first matching rule wins."""

    priority_class: PriorityClass
    project: str | None = None
    source: str | None = None
    managed: str | None = None
    label: str | None = Field(default=None, pattern=r"^[^=]+=")

    @model_validator(mode="after")
    def _matches_something(self) -> "PriorityRule":
        if self.project is None and self.source is None and self.managed is None and self.label is None:
            raise ValueError("a priority rule needs at least one of project, source, managed, label")
        return self


class PriorityConfig(_Section):
    rules: list[PriorityRule] = Field(default_factory=list)
    # At most this many high-priority sessions live at once per node; managed ones beyond it wait in the queue.
    max_high_per_node: int = Field(default=2, ge=0)
    # A node is loaded when its load1 per core (the detector's utilisation) is at or above loaded_utilisation
    # for loaded_for_s: its background sessions are reniced; still loaded pause_after_s later, they are
    # paused; once it stays below unloaded_utilisation for clear_s, both are reverted.
    loaded_utilisation: float = Field(default=1.0, gt=0)
    unloaded_utilisation: float = Field(default=0.8, gt=0)
    loaded_for_s: float = Field(default=10.0, ge=0)
    pause_after_s: float = Field(default=30.0, ge=0)
    clear_s: float = Field(default=15.0, ge=0)
    background_nice: int = Field(default=10, ge=1, le=19)

    @model_validator(mode="after")
    def _ordered(self) -> "PriorityConfig":
        if self.unloaded_utilisation > self.loaded_utilisation:
            raise ValueError(f"unloaded_utilisation ({self.unloaded_utilisation}) must not be above loaded_utilisation ({self.loaded_utilisation})")
        return self


class ProviderCostConfig(_Section):
    anthropic_admin_key_env: str | None = None
    openai_admin_key_env: str | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    openai_base_url: str = "https://api.openai.com"
    refresh_s: float = Field(default=3600, gt=0)


class CostConfig(_Section):
    daily_budget_usd: float | None = Field(default=None, ge=0)
    monthly_budget_usd: float | None = Field(default=None, ge=0)
    pricing_file: str | None = None
    burn_window_s: float = Field(default=600.0, gt=0, le=86400)  # the burn rate's sliding window
    max_burn_usd_per_h: float | None = Field(default=None, gt=0)  # the fleet's; a budget.notice above it
    max_session_burn_usd_per_h: float | None = Field(default=100.0, gt=0)  # one session's; None: no notice
    providers: ProviderCostConfig = Field(default_factory=ProviderCostConfig)


class WebhookConfig(_Section):
    kind: Literal["slack", "discord", "json"]
    url: str | None = None
    url_env: str | None = None
    min_severity: Literal["info", "warning", "critical"] = "warning"

    @model_validator(mode="after")
    def _has_url(self) -> "WebhookConfig":
        if not (self.url or self.url_env):
            raise ValueError("a webhook needs url or url_env")
        return self


class AlertsConfig(_Section):
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    dedupe_window_s: float = Field(default=300, ge=0)
    max_retries: int = Field(default=3, ge=0)
    timeout_s: float = Field(default=5.0, gt=0)
    # A session waiting for a person this long raises one `session.waiting` alert per wait.
    waiting_after_s: float = Field(default=120.0, gt=0)


class UiConfig(_Section):
    refresh_hz: float = Field(default=4.0, gt=0, le=30)
    fps: int = Field(default=30, ge=1, le=120)
    theme: Literal["dark", "light"] = "dark"
    keymap: dict[str, str] = Field(default_factory=dict)  # binding id -> keys, e.g. freeze = "F"
    # Write only the cells that changed (false: Textual's line updates, for a terminal that misdraws).
    cell_diff: bool = True


class LivenessConfig(_Section):
    # A node without frames this long is offline; its sessions are unknown. Overridden per node.
    timeout_s: float = Field(default=10.0, gt=0)


class BrainConfig(_Section):
    # Only the brain holding the lease acts; it renews it every lease_s / 3, and another brain on the
    # same database takes over once it has gone unrenewed this long.
    lease_s: float = Field(default=15.0, gt=0, le=3600)


class StoreConfig(_Section):
    retention_days: float = Field(default=30, gt=0)
    metric_rollup_s: int = Field(default=10, ge=1)
    # Sessions the console keeps in memory per node: past it the oldest ended ones are forgotten,
    # then new ones are refused, so a node announcing 30,000 sessions cannot exhaust the console.
    max_sessions_per_node: int = Field(default=2000, ge=10)


class Config(_Section):
    nodes: list[NodeConfig] = Field(default_factory=list)
    prometheus: list[PrometheusConfig] = Field(default_factory=list)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    rebalance: RebalanceConfig = Field(default_factory=RebalanceConfig)
    consent: ConsentConfig = Field(default_factory=ConsentConfig)
    policies: PoliciesConfig = Field(default_factory=PoliciesConfig)
    healing: HealingConfig = Field(default_factory=HealingConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    liveness: LivenessConfig = Field(default_factory=LivenessConfig)
    brain: BrainConfig = Field(default_factory=BrainConfig)
    priority: PriorityConfig = Field(default_factory=PriorityConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)

    @model_validator(mode="after")
    def _unique_nodes(self) -> "Config":
        names = [n.name for n in self.nodes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"node names must be unique: {', '.join(sorted(dup))}")
        return self


@dataclass(frozen=True)
class Paths:
    config_file: Path
    data_dir: Path

    @property
    def database(self) -> Path:
        return self.data_dir / "heady.db"

    @property
    def audit_anchor(self) -> Path:
        return self.data_dir / "heady.db.anchor"

    @classmethod
    def resolve(cls, explicit_config: str | None = None, explicit_data: str | None = None) -> "Paths":
        data = Path(explicit_data).expanduser() if explicit_data else data_dir()
        return cls(config_file=config_path(explicit_config), data_dir=data)


def load_config(paths: Paths, *, required: bool = False) -> Config:
    """Read and validate; a missing file at the default place means defaults. One-line ConfigError."""
    raw = read_toml(paths.config_file, required=required)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(validation_message(paths.config_file, exc)) from None
