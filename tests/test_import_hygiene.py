"""The node agent stays light and the engines stay UI-free: checked in fresh interpreters."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import heady_agent

ROOT = Path(__file__).resolve().parents[1]


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _agent_modules() -> list[str]:
    # __main__ would run the agent; it only imports cli, which is covered.
    return [m.name for m in pkgutil.walk_packages(heady_agent.__path__, "heady_agent.") if m.name != "heady_agent.__main__"]


def _roots(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_importing_every_agent_module_loads_no_console_or_ui_library() -> None:
    imports = "\n".join(f"import {name}" for name in _agent_modules())
    loaded = _loaded_after(imports)
    assert not _roots(loaded) & {"textual", "rich", "heady_tui"}


def test_importing_the_engines_loads_no_ui_or_sockets() -> None:
    loaded = _loaded_after("import heady_tui.engine, pkgutil, importlib\n"
                           "for m in pkgutil.walk_packages(heady_tui.engine.__path__, 'heady_tui.engine.'):\n"
                           "    importlib.import_module(m.name)")
    assert not _roots(loaded) & {"textual", "websockets"}
    assert not {name for name in loaded if name.startswith("heady_tui.ui")}


def test_agent_distribution_does_not_depend_on_textual_or_rich() -> None:
    project = tomllib.loads((ROOT / "agent" / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("=")[0].split("<")[0].strip().lower() for dep in project["dependencies"]}
    assert not names & {"textual", "rich"}
