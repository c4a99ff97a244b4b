"""`heady notify-deploy [--node NAME]`: a row the running console's healing loop picks up. NAME must be a
node the config names or the store has seen."""

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
        if args.node:
            # Nodes the config names, and any this data dir has stored (a demo's, or one removed from the config since).
            known = {n.name for n in config.nodes} | {n["id"] for n in await records.store.nodes()}
            if args.node not in known:
                listed = ", ".join(sorted(known)) if known else "none: no [[nodes]] in the config and none stored"
                print(f"heady: error: no node named {args.node!r} (known: {listed})", file=sys.stderr)
                return 1
        await RecordsOperator(records, config, clock).notify_deploy(args.node)
        print(f"deploy noted for {args.node or 'all nodes'}; the healing loop runs a full cycle at its next tick")
        return 0

    return run_records_command(args, body)
