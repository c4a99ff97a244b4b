"""`heady`: the console on the configured nodes, or on this machine through an embedded agent.

When a headless console of this data dir answers on its attach socket, `heady` attaches to it
instead: one brain acts on the fleet, the service's (docs/attach.md).
"""

from __future__ import annotations

import argparse

from ..attach.wire import socket_path
from ..supervisor import Supervisor
from .attach import run_attached, serving
from .headless import log_to_file, node_launcher, paths_and_config


def run(args: argparse.Namespace) -> int:
    paths, config = paths_and_config(args)
    log_to_file(paths)
    path = socket_path(paths.data_dir)
    if serving(path):
        return run_attached(path, paths, config, args)
    supervisor = Supervisor(config, paths, launcher=node_launcher(config, paths))
    from ..ui.app import run_app

    return run_app(supervisor, config, args)
