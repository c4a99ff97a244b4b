"""Open the data dir's store and engine records for a one-shot command (a console may be running: WAL)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from heady_agent.clock import SystemClock
from heady_tui.config import Config, Paths, load_config
from heady_tui.records import Records
from heady_tui.store import Store, StoreError

T = TypeVar("T")


def with_records(args: Any, body: Callable[[Records, Config, Paths, SystemClock], Awaitable[T]]) -> T:
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


__all__ = ["with_records", "StoreError"]
