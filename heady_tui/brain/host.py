"""What the brain needs from the console that hosts it (the Supervisor in production), and the
context its parts share: the host, the config, the clock and the records once they are open."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from heady_agent.clock import Clock
from heady_agent.protocol import Result
from heady_tui.config import Config, Paths
from heady_tui.events import HeadyEvent
from heady_tui.fleet import Fleet
from heady_tui.records import Records
from heady_tui.store import Store

if TYPE_CHECKING:
    from .lease import Lease

CONSOLE = "console"  # actor of automatic decisions in the audit chain

# A command's outcome as the brain uses it: ok, error code, detail.
Outcome = tuple[bool, str | None, dict[str, Any]]


class BrainHost(Protocol):
    """Exactly what the brain reads from and does through its host."""

    @property
    def clock(self) -> Clock: ...

    @property
    def config(self) -> Config: ...

    @property
    def paths(self) -> Paths: ...

    @property
    def fleet(self) -> Fleet: ...

    @property
    def store(self) -> Store | None: ...

    def publish(self, name: str, **details: object) -> HeadyEvent: ...

    async def command(self, node: str, action: str, target: str | None = None,
                      args: Mapping[str, object] | None = None) -> Result: ...

    async def reconnect(self, node: str) -> None:
        """Drop a node's link that is not online and dial again at once (no backoff wait)."""
        ...


class BrainContext:
    """Shared by the brain's parts; `records` is usable once `open(records)` ran (Brain.start)."""

    def __init__(self, host: BrainHost) -> None:
        self.host = host
        self.clock = host.clock
        self.config = host.config
        self.opened: Records | None = None
        self.lease: Lease | None = None  # set by Brain.start

    @property
    def records(self) -> Records:
        assert self.opened is not None, "the brain is not started"
        return self.opened

    def publish(self, name: str, **details: object) -> None:
        self.host.publish(name, **details)

    async def command(self, node: str, action: str, target: str | None, args: Mapping[str, object]) -> Outcome:
        """Send a decision's command, stamped with the lease token (`fence`); refused unless this brain
        holds an unexpired lease (one that lapsed is renewed first, which fails if another brain took it)."""
        lease = self.lease
        if lease is not None and lease.held and not lease.acting(self.clock.now()):
            await lease.renew()
        if lease is None or not lease.acting(self.clock.now()):
            holder = lease.row.holder if lease is not None and lease.row is not None else "another console"
            return False, "view_only", {"message": f"not sent: the brain of {holder} acts on this fleet"}
        result = await self.host.command(node, action, target, {**args, "fence": lease.token})
        return result.ok, result.error, dict(result.detail)
