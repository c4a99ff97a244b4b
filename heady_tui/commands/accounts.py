"""`heady accounts [--json]`: each account's 5-hour and weekly windows across the fleet, as the
console's brain last derived them (heady_tui.accounts): used share, spend, burn rate, time to the
limit at that rate, reset time, and whether the figure is the client's (official) or ours (estimate)."""

from __future__ import annotations

import argparse
import json
import sys

from heady_agent.clock import Clock
from heady_tui.accounts import COLUMNS, window_cells
from heady_tui.commands._engine_store import StoreError, with_records
from heady_tui.config import Config, Paths
from heady_tui.records import Records


def run(args: argparse.Namespace) -> int:
    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        windows = await records.account_windows()
        if args.json:
            print(json.dumps({"accounts": [w.to_dict() for w in windows]}, sort_keys=True))
            return 0
        if not windows:
            print("no account windows yet: a running console derives them from the sessions that name an account")
            return 0
        rows = [list(COLUMNS), *(window_cells(w) for w in windows)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        return 0

    try:
        return with_records(args, body)
    except StoreError as exc:
        print(f"heady: error: {exc}", file=sys.stderr)
        return 1
