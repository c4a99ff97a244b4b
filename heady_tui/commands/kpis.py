"""`heady kpis [--since 7d] [--json]`: the rebalancing KPIs over a range, with their targets."""

from __future__ import annotations

import argparse
import json

from heady_agent.clock import Clock
from heady_tui.cli import UsageError
from heady_tui.commands._engine_store import run_records_command
from heady_tui.config import Config, Paths
from heady_tui.engine.kpis import rebalance_kpis
from heady_tui.records import Records
from heady_tui.report import ReportError, kpi_text, parse_time


def run(args: argparse.Namespace) -> int:
    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        now = clock.now()
        try:
            since = parse_time(args.since, now, option="--since")
        except ReportError as exc:
            raise UsageError(str(exc)) from None
        kpis = rebalance_kpis(await records.rebalances(since, now), await records.requests(since, now))
        if args.json:
            print(json.dumps({"since": since, "until": now, "kpis": [k.to_dict() for k in kpis]}, sort_keys=True))
            return 0
        for k in kpis:
            mark = {True: "ok", False: "MISSED", None: "-"}[k.met]
            target = kpi_text(k.target, k.unit, ">=" if k.direction == "min" else "<=")
            print(f"{k.name:<26} {kpi_text(k.value, k.unit):>9}  target {target:<9} {mark}")
        return 0

    return run_records_command(args, body)
