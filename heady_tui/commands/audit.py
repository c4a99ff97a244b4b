"""`heady audit verify | log [--limit N] [--json]`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from heady_agent.clock import Clock
from heady_tui.config import Config, Paths
from heady_tui.records import Records
from heady_tui.commands._engine_store import RecordsBody, StoreError, with_records


def run(args: argparse.Namespace) -> int:
    try:
        return with_records(args, _verify if args.verb == "verify" else _log(args))
    except StoreError as exc:
        print(f"heady: error: {exc}", file=sys.stderr)
        return 1


async def _verify(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
    result = await records.verify_audit()
    if result.ok:
        print(result.message)
        return 0
    print(f"heady: audit verify failed: {result.message}", file=sys.stderr)
    return 1


def _log(args: argparse.Namespace) -> RecordsBody[int]:
    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        entries = await records.audit_entries(args.limit)
        if args.json:
            for e in entries:
                print(json.dumps(e.to_dict(), sort_keys=True, separators=(",", ":")))
            return 0
        for e in entries:
            when = datetime.fromtimestamp(e.ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            details = " ".join(f"{k}={v}" for k, v in sorted(e.details.items()))
            print(f"{e.seq:>6}  {when}Z  {e.actor:<24} {e.action:<24} {details}")
        return 0

    return body
