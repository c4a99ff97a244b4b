"""Open the data dir's store and engine records for a one-shot command (a console may be running: WAL)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from heady_agent.clock import Clock, SystemClock
from heady_tui.config import Config, Paths, load_config
from heady_tui.records import Records
from heady_tui.store import Store, StoreError

T = TypeVar("T")
RecordsBody = Callable[[Records, Config, Paths, Clock], Awaitable[T]]


def with_records(args: argparse.Namespace, body: RecordsBody[T]) -> T:
    paths = Paths.resolve(args.config, args.data_dir)
    config = load_config(paths)

    async def main() -> T:
        store = await Store.open(paths.database)
        try:
            records = await Records.open(store, paths.audit_anchor)
            return await body(records, config, paths, SystemClock())
        finally:
            await store.close()

    return asyncio.run(main())


def run_records_command(args: argparse.Namespace, body: RecordsBody[int],
                        errors: tuple[type[Exception], ...] = (StoreError,)) -> int:
    """A command's exit code: `body`'s, or 1 with the one-line error of any of `errors`."""
    try:
        return with_records(args, body)
    except errors as exc:
        print(f"heady: error: {exc}", file=sys.stderr)
        return 1


__all__ = ["RecordsBody", "run_records_command", "with_records", "StoreError"]
