"""`heady kpis [--since 7d] [--json]`: the rebalancing KPIs over a range, with their targets."""

from __future__ import annotations

import argparse
import json
import sys

from heady_agent.clock import Clock
from heady_tui.cli import UsageError
from heady_tui.commands._engine_store import StoreError, with_records
from heady_tui.config import Config, Paths
from heady_tui.engine.kpis import Kpi, rebalance_kpis
from heady_tui.records import Records
from heady_tui.report import ReportError, parse_time


def _shown(k: Kpi) -> str:
    if k.value is None:
        return "no data"
    if k.unit == "ratio":
        return f"{k.value * 100:.0f} %"
    if k.unit == "s":
        return f"{k.value:.1f} s"
    return f"{k.value:.0f}"


def _target(k: Kpi) -> str:
    bound = ">=" if k.direction == "min" else "<="
    value = f"{k.target * 100:.0f} %" if k.unit == "ratio" else f"{k.target:g}{' s' if k.unit == 's' else ''}"
    return f"{bound} {value}"


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
            print(f"{k.name:<26} {_shown(k):>9}  target {_target(k):<8} {mark}")
        return 0

    try:
        return with_records(args, body)
    except StoreError as exc:
        print(f"heady: error: {exc}", file=sys.stderr)
        return 1
