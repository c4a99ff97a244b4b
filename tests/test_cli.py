"""The `heady` command line: help, version, and one-line errors on bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from heady_tui import __version__


def heady(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "heady_tui", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_version_prints_the_version():
    result = heady("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"heady {__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["demo", "--help"],
        ["run", "--help"],
        ["nodes", "list", "--help"],
        ["sessions", "list", "--help"],
        ["report", "export", "--help"],
        ["audit", "verify", "--help"],
        ["audit", "log", "--help"],
        ["permissions", "grant", "--help"],
        ["notify-deploy", "--help"],
        ["consent", "prompt", "--help"],
        ["consent", "html", "--help"],
    ],
)
def test_every_command_has_help(argv):
    result = heady(*argv)
    assert result.returncode == 0
    assert "usage: heady" in result.stdout


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["demo", "--scenario", "meteor"], "invalid choice: 'meteor'"),
        (["demo", "--nodes", "0"], "must be at least 1"),
        (["run", "--headless", "--for", "soon"], "not a duration"),
        (["permissions", "grant", "--scope", "forever"], "invalid choice: 'forever'"),
        (["run"], "--headless"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, fragment):
    result = heady(*argv)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("usage")]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


def test_broken_config_file_exits_2_with_one_line(tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[detector\n")
    result = heady("--config", str(cfg), "run", "--headless", "--for", "1")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "invalid TOML" in result.stderr and str(cfg) in result.stderr
