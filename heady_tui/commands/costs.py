"""`heady costs reprice [--since 7d] [--json]`: price the stored calls again with the current table.

Calls are priced once, when they are stored. After a price change (a new shipped table or an edited
`cost.pricing_file`) this is the one way to change stored costs: each call's cost and table version,
its session's totals and the daily rollups move in one transaction with an audit entry saying how
many calls changed and the totals before and after. A console running meanwhile shows the new
figures after its next start.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from heady_agent.clock import Clock, SystemClock
from heady_agent.config import ConfigError

from ..cli import UsageError
from ..config import Config, Paths
from ..engine.consent import grantor
from ..engine.cost import PricingTable
from ..records import Records
from ..report import ReportError, parse_time
from ..store import reprice_in
from ._engine_store import StoreError, run_records_command


async def reprice(records: Records, config: Config, *, since: float | None, now: float, actor: str) -> dict[str, Any]:
    """Reprice and audit in one transaction; returns the audit entry's details."""
    pricing = PricingTable.load(config.cost)
    details: dict[str, Any] = {"since": since, "pricing_version": pricing.version}
    # The audit entry is appended when the body is done, so it carries the counts the body found.
    async with records.write((now, actor, "costs.reprice", details)) as db:
        result = await reprice_in(db, pricing, since)
        details.update(calls=result.calls, changed=result.changed, old_total_usd=round(result.old_total_usd, 6),
                       new_total_usd=round(result.new_total_usd, 6))  # fmt: skip
    return details


def run(args: argparse.Namespace) -> int:
    clock = SystemClock()
    now = clock.now()
    try:
        since = parse_time(args.since, now, option="--since") if args.since else None
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    database = Paths.resolve(args.config, args.data_dir).database
    if not database.exists():
        print(f"heady: error: no data yet: {database} does not exist (nothing to reprice)", file=sys.stderr)
        return 1

    async def body(records: Records, config: Config, paths: Paths, _clock: Clock) -> int:
        details = await reprice(records, config, since=since, now=now, actor=grantor())
        if args.json:
            print(json.dumps(details, sort_keys=True))
        else:
            print(f"repriced {details['calls']} calls with pricing {details['pricing_version']}: {details['changed']} changed, "
                  f"total ${details['old_total_usd']:,.4f} -> ${details['new_total_usd']:,.4f}")  # fmt: skip
        return 0

    return run_records_command(args, body, (StoreError, ConfigError))
