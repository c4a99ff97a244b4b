"""`heady demo`: the console (or, with --headless, the JSON-lines engine) on a simulated fleet.

A demo keeps its own data directory, `<data dir>/demo/` unless `--data-dir` is given, so its
simulated nodes, grants and audit entries never mix with the real fleet's database.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace

from ..cli import UsageError
from ..config import Paths
from ..launcher import demo_launcher
from ..supervisor import Supervisor
from .headless import configure_logging, log_to_file, paths_and_config, run_headless

DEMO_DIR = "demo"


def demo_paths(paths: Paths, explicit_data_dir: str | None) -> Paths:
    """The demo's own data directory: `--data-dir` when given, else `<default data dir>/demo`."""
    if explicit_data_dir:
        return paths
    return replace(paths, data_dir=paths.data_dir / DEMO_DIR)


def run(args: argparse.Namespace) -> int:
    real_paths, config = paths_and_config(args)
    paths = demo_paths(real_paths, args.data_dir)
    if not args.speed > 0:
        raise UsageError(f"--speed must be above 0, got {args.speed:g}")
    launcher = demo_launcher(
        paths.data_dir, nodes=args.nodes, scenario=args.scenario, speed=args.speed, seed=args.seed
    )
    # A demo supervises only its simulated fleet, never the configured real nodes.
    demo_config = config.model_copy(update={"nodes": []})
    supervisor = Supervisor(demo_config, paths, simulated=True, launcher=launcher)
    if args.headless:
        configure_logging()
        return asyncio.run(run_headless(supervisor, args.duration))
    from ..ui.app import run_app

    log_to_file(paths)
    return run_app(supervisor, demo_config, args)
