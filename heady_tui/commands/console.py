"""`heady`: the console on the configured nodes, or on this machine through an embedded agent."""

from __future__ import annotations

import argparse

from ..supervisor import Supervisor
from .headless import log_to_file, node_launcher, paths_and_config


def run(args: argparse.Namespace) -> int:
    paths, config = paths_and_config(args)
    log_to_file(paths)
    supervisor = Supervisor(config, paths, launcher=node_launcher(config, paths))
    from ..ui.app import run_app

    return run_app(supervisor, config, args)
