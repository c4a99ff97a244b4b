"""`heady permissions list [--json] [--all] | grant --scope S [--reason R] | revoke ID`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import datetime, timezone

from heady_agent.clock import Clock
from heady_tui.config import Config, Paths
from heady_tui.records import Records
from heady_tui.commands._engine_store import RecordsBody, StoreError, run_records_command
from heady_tui.engine.consent import ConsentError
from heady_tui.operator import RecordsOperator


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M") + "Z" if ts else "never"


def run(args: argparse.Namespace) -> int:
    return run_records_command(args, {"list": _list, "grant": _grant, "revoke": _revoke}[args.verb](args), (StoreError, ConsentError))


def _list(args: argparse.Namespace) -> RecordsBody[int]:
    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        now = clock.now()
        grants = [g for g in await records.grants() if args.all or g.status(now) == "active"]
        if args.json:
            print(json.dumps([{**asdict(g), "status": g.status(now)} for g in grants], sort_keys=True))
            return 0
        if not grants:
            print("no active grants" if not args.all else "no grants")
            return 0
        for g in grants:
            uses = f"{g.uses}/{g.max_uses}" if g.max_uses is not None else str(g.uses)
            print(f"{g.id}  {g.scope:<10} {g.status(now):<8} uses {uses:<5} expires {_when(g.expires):<17} {g.grantor}  {g.reason}")
        return 0

    return body


def _grant(args: argparse.Namespace) -> RecordsBody[int]:
    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        g = await RecordsOperator(records, config, clock).grant(args.scope, args.reason)
        print(f"granted {g.id} ({g.scope}, expires {_when(g.expires)}) by {g.grantor}")
        return 0

    return body


def _revoke(args: argparse.Namespace) -> RecordsBody[int]:
    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        g = await RecordsOperator(records, config, clock).revoke_grant(args.id)
        print(f"revoked {g.id} ({g.scope})")
        return 0

    return body
