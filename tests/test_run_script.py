"""scripts/run.sh installs only when the environment is missing or stale, then starts heady.

Run against a copy of the script in a scratch project whose .venv holds stand-ins for pip and
heady that record being called (pip is outside this project; what is tested is when it runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "run.sh"


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    (root / "agent").mkdir()
    shutil.copy(SCRIPT, root / "scripts" / "run.sh")
    (root / "pyproject.toml").write_text("[project]\nname = 'heady'\n")
    (root / "agent" / "pyproject.toml").write_text("[project]\nname = 'heady-agent'\n")
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, body in (("pip", 'echo "$*" >> "$(dirname "$0")/../pip.log"'), ("heady", 'echo "heady $*"'),
                       ("python", "exit 0")):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    return root


def _start(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(root / "scripts" / "run.sh"), "--version"], capture_output=True, text=True,
                          timeout=60, check=True)


def _installs(root: Path) -> int:
    log = root / ".venv" / "pip.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_first_start_installs_and_starts_heady_with_the_arguments(tmp_path: Path):
    root = _project(tmp_path)
    assert _start(root).stdout.strip() == "heady --version"
    assert _installs(root) == 1


def test_second_start_does_not_install_again(tmp_path: Path):
    root = _project(tmp_path)
    _start(root)
    _start(root)
    assert _installs(root) == 1


def test_a_changed_pyproject_installs_again(tmp_path: Path):
    root = _project(tmp_path)
    _start(root)
    with (root / "agent" / "pyproject.toml").open("a") as f:
        f.write("dependencies = ['websockets>=12,<16']\n")
    _start(root)
    assert _installs(root) == 2
