"""`heady audit verify [--against COUNT:HASH] | anchor --export | log [--limit N] [--json]`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timezone

from heady_agent.clock import Clock
from heady_agent.protocol import clean_line
from heady_tui.audit import Head
from heady_tui.cli import UsageError
from heady_tui.commands._engine_store import RecordsBody, run_records_command
from heady_tui.config import Config, Paths
from heady_tui.records import Records

_EXPORTED_HEAD = re.compile(r"^\s*(\d+):([0-9a-f]{64})\s*$")


def parse_head(text: str) -> Head:
    """`COUNT:HASH` as `audit anchor --export` prints it."""
    match = _EXPORTED_HEAD.match(text)
    if match is None:
        raise UsageError(f"--against: expected COUNT:HASH (64 lowercase hex digits), got {text[:80]!r}")
    return Head(int(match[1]), match[2])


def run(args: argparse.Namespace) -> int:
    body: RecordsBody[int]
    if args.verb == "verify":
        body = _verify(parse_head(args.against) if args.against else None)
    elif args.verb == "anchor":
        body = _export
    else:
        body = _log(args)
    return run_records_command(args, body)


def _verify(against: Head | None) -> RecordsBody[int]:
    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        result = await records.verify_audit(against)
        if result.ok:
            print(result.message + (f"; contains the exported head {against.count}:{against.hash[:16]}" if against else ""))
            return 0
        print(f"heady: audit verify failed: {result.message}", file=sys.stderr)
        return 1

    return body


async def _export(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
    """The head, only when the chain verifies: exporting a forged head would certify the forgery."""
    result = await records.verify_audit()
    if not result.ok:
        print(f"heady: audit verify failed, nothing exported: {result.message}", file=sys.stderr)
        return 1
    print(f"{result.head.count}:{result.head.hash}")
    return 0


def _log(args: argparse.Namespace) -> RecordsBody[int]:
    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        entries = await records.audit_entries(args.limit)
        if args.json:
            for e in entries:
                print(json.dumps(e.to_dict(), sort_keys=True, separators=(",", ":")))
            return 0
        for e in entries:
            when = datetime.fromtimestamp(e.ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            # Entries quote node and session names, which are agent text: one terminal-safe line each.
            details = clean_line(" ".join(f"{k}={v}" for k, v in sorted(e.details.items())), 4096)
            print(f"{e.seq:>6}  {when}Z  {clean_line(e.actor):<24} {clean_line(e.action):<24} {details}")
        return 0

    return body
