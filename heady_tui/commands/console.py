"""`heady`: the console on the configured nodes, or on this machine through an embedded agent."""

from __future__ import annotations

import argparse

from ..supervisor import Supervisor
from .headless import node_launcher, paths_and_config


def run(args: argparse.Namespace) -> int:
    paths, config = paths_and_config(args)
    supervisor = Supervisor(config, paths, launcher=node_launcher(config, paths))
    from ..ui.app import run_app

    return run_app(supervisor, config, args)
