"""`heady notify-deploy [--node NAME]`: a row the running console's healing loop picks up."""

from __future__ import annotations

import argparse
import sys

from heady_agent.clock import Clock
from heady_tui.config import Config, Paths
from heady_tui.records import Records
from heady_tui.commands._engine_store import run_records_command
from heady_tui.operator import RecordsOperator


def run(args: argparse.Namespace) -> int:
    async def body(records: Records, config: Config, paths: Paths, clock: Clock) -> int:
        known = {n.name for n in config.nodes}
        if args.node and known and args.node not in known:
            print(f"heady: error: no node named {args.node!r} in the config (known: {', '.join(sorted(known))})", file=sys.stderr)
            return 1
        await RecordsOperator(records, config, clock).notify_deploy(args.node)
        print(f"deploy noted for {args.node or 'all nodes'}; the healing loop runs a full cycle at its next tick")
        return 0

    return run_records_command(args, body)
