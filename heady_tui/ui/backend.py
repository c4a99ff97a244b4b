"""What the UI reads and acts through, whichever console it shows.

Embedded, the console is this process's `Supervisor` (with its `Brain`) and `ConsoleOperator`;
attached (`heady attach`), it is `heady_tui.attach.client.AttachedConsole`, which shows a headless
console's state as it arrives over the socket and forwards actions to it. Both satisfy these
protocols structurally, so every screen works unchanged in both modes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from heady_agent.clock import Clock
from heady_agent.protocol import Detail, Result

from ..audit import AuditEntry, Verification
from ..brain.lease import LeaseView
from ..config import Paths
from ..engine.consent import ConsentRequest, Grant
from ..engine.cost import BurnNotice, CostSummary
from ..engine.detector import EquilibriumReading
from ..engine.healing import HealingCycle, Task, WeakPoint
from ..engine.kpis import Kpi
from ..engine.policies import NeedsAttention
from ..engine.rebalance import RebalanceStatus
from ..events import HeadyEvent
from ..fleet import Fleet
from ..store import Store


class BrainReads(Protocol):
    """The brain's read API as the screens use it, and the consent dialog's hold on a request."""

    @property
    def view_only(self) -> bool: ...

    def equilibrium(self) -> EquilibriumReading | None: ...

    def lease_view(self) -> LeaseView | None: ...

    def rebalance_status(self) -> RebalanceStatus | None: ...

    def costs_today_by_node(self) -> dict[str, float]: ...

    def burn_alerts(self) -> list[BurnNotice]: ...

    def cost_summary(self) -> CostSummary: ...

    def pending_consent(self) -> list[ConsentRequest]: ...

    def hold_consent(self, request_id: str) -> ConsentRequest: ...

    async def release_consent(self, request_id: str) -> None: ...

    def grants(self, include_inactive: bool = False) -> list[Grant]: ...

    def tasks(self) -> list[Task]: ...

    def weak_points(self) -> list[WeakPoint]: ...

    def healing_cycles(self, limit: int = ...) -> list[HealingCycle]: ...

    def needs_attention(self) -> list[NeedsAttention]: ...

    async def rebalance_kpis(self, since: float, until: float) -> list[Kpi]: ...

    async def audit_entries(self, limit: int = 50) -> list[AuditEntry]: ...

    async def verify_audit(self) -> Verification: ...


class ConsoleBackend(Protocol):
    """The console the UI shows: its fleet, its brain's reads, events and change notices."""

    @property
    def clock(self) -> Clock: ...

    @property
    def paths(self) -> Paths: ...

    @property
    def fleet(self) -> Fleet: ...

    @property
    def brain(self) -> BrainReads | None: ...

    @property
    def simulated(self) -> bool: ...

    @property
    def details(self) -> Mapping[str, Detail]: ...

    @property
    def store(self) -> Store | None:
        """The console's store, for reads the query layer does not hold (a session's timeline);
        None while starting and when attached."""
        ...

    def insecure_links(self) -> list[str]: ...

    def subscribe(self, callback: Callable[[HeadyEvent], None]) -> Callable[[], None]: ...

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]: ...

    def focus(self, node: str, on: bool) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Operator(Protocol):
    """The command layer (heady_tui/operator.py) as the UI uses it."""

    async def command(self, node: str, action: str, target: str | None = None,
                      args: Mapping[str, object] | None = None) -> Result: ...

    async def approve_task(self, task_id: str) -> Task: ...

    async def reject_task(self, task_id: str) -> Task: ...

    async def reset_policy(self, node: str, session: str, policy: str) -> bool: ...

    async def decide_consent(self, request_id: str, decision: str) -> Grant | None: ...

    async def grant(self, scope: str, reason: str) -> Grant: ...

    async def revoke_grant(self, grant_id: str) -> Grant: ...

    async def notify_deploy(self, node: str | None = None) -> None: ...
