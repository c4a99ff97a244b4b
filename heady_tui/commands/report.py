"""`heady report export [--since 24h|ISO] [--until ISO] [--format html|md|json] [-o FILE]`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from heady_agent.clock import SystemClock

from ..cli import UsageError
from ..config import Config, Paths, load_config
from ..report import Format, ReportError, gather_report, parse_time, render, write_atomically
from ..store import Store, StoreError


def run(args: argparse.Namespace) -> int:
    paths = Paths.resolve(args.config, args.data_dir)
    config = load_config(paths)
    now = SystemClock().now()
    try:
        since = parse_time(args.since, now, option="--since")
        until = parse_time(args.until, now, option="--until") if args.until else now
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    if since >= until:
        raise UsageError(f"--since must be before --until (got {args.since!r} and {args.until or 'now'!r})")
    if not paths.database.exists():
        print(f"heady: error: no data yet: {paths.database} does not exist (run the console or `heady run --headless` first)", file=sys.stderr)
        return 1
    output = Path(args.output).expanduser() if args.output else None
    if output is not None and output.is_dir():
        raise UsageError(f"-o {output}: is a directory; give a file name")
    try:
        text = asyncio.run(_render(config, paths, since, until, now, args.format))
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            write_atomically(output, text)
            print(f"wrote {output}", file=sys.stderr)
    except (ReportError, StoreError) as exc:
        print(f"heady: error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _render(config: Config, paths: Paths, since: float, until: float, now: float, fmt: Format) -> str:
    store = await Store.open(paths.database, metric_rollup_s=config.store.metric_rollup_s)
    try:
        report = await gather_report(store, config, paths, since=since, until=until, now=now, ask_providers=True)
    finally:
        await store.close()
    return render(report, fmt, config)
