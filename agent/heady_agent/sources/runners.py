"""Test runs a watched session executed through its shell tool: which runner a command line runs,
and the passed / failed counts the runner printed. Claude Code and Codex report them as `test.run`.

Only what the command line and the output say is read; counts are bounded numbers, never text
shown as it came.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from ..protocol import NAME_MAX, TEST_COUNT_MAX, clean_line

OUTPUT_TAIL = 64 * 1024  # runners print their summary last: only this much of the output's end is read
SEGMENT_SPLIT = re.compile(r"&&|\|\||[;|\n]")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Words that run the rest of the line: skipped with their options (`timeout 60 pytest`, `uv run pytest`).
WRAPPERS = {"env", "time", "nice", "timeout", "exec", "command", "sudo"}
RUNS = {("uv", "run"), ("poetry", "run"), ("pdm", "run"), ("hatch", "run"), ("pipenv", "run"), ("npx",), ("bunx",),
        ("pnpm", "exec"), ("pnpm", "dlx"), ("yarn", "exec"), ("npm", "exec")}
PACKAGE_MANAGERS = ("npm", "pnpm", "yarn")
DIRECT = {"pytest": "pytest", "py.test": "pytest", "jest": "jest", "vitest": "vitest"}
COUNT = r"(?<![\d.])(\d{1,9})"  # a whole number: the tail of a longer one is no count
# Summaries, most specific first; each gives (passed, failed) from its last match in the output.
JEST_TESTS = re.compile(rf"^Tests:\s+(.*?){COUNT} total\s*$", re.M)
VITEST_TESTS = re.compile(r"^\s*Tests\s+(.*?)\(\d+\)\s*$", re.M)
CARGO_RESULT = re.compile(rf"^test result: \w+\. {COUNT} passed; {COUNT} failed;", re.M)
PYTEST_SUMMARY = re.compile(rf"^=*\s*((?:{COUNT} (?:passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)"
                            rf"(?:, )?)+) in [\d.]+s", re.M)
GO_RESULT = re.compile(r"^\s*--- (PASS|FAIL): ", re.M)
WORD_COUNT = re.compile(rf"{COUNT} (passed|failed|errors?)")


def runner_of(command: str) -> str | None:
    """The test runner a shell command line runs (a protocol TEST_RUNNERS name), or None."""
    for segment in SEGMENT_SPLIT.split(command):
        try:
            words = shlex.split(segment)
        except ValueError:
            words = segment.split()
        runner = _runner_of_words(words)
        if runner is not None:
            return runner
    return None


def _runner_of_words(words: list[str]) -> str | None:
    words = _unwrapped(words)
    if not words:
        return None
    program = words[0].rsplit("/", 1)[-1]
    rest = words[1:]
    if program in DIRECT:
        return DIRECT[program]
    if re.fullmatch(r"python[\d.]*", program) and rest[:2] == ["-m", "pytest"]:
        return "pytest"
    if program == "go" and rest[:1] == ["test"]:
        return "go"
    if program == "cargo" and rest[:1] == ["test"]:
        return "cargo"
    if program in PACKAGE_MANAGERS and (rest[:1] in (["test"], ["t"]) or rest[:2] == ["run", "test"]):
        return program
    return None


def _unwrapped(words: list[str]) -> list[str]:
    while words:
        if ENV_ASSIGNMENT.match(words[0]):
            words = words[1:]
        elif words[0] in WRAPPERS:
            words = words[1:]
            while words and (words[0].startswith("-") or words[0][:1].isdigit() or ENV_ASSIGNMENT.match(words[0])):
                words = words[1:]
        elif tuple(words[:2]) in RUNS or tuple(words[:1]) in RUNS:
            words = words[2:] if tuple(words[:2]) in RUNS else words[1:]
            while words and words[0].startswith("-"):
                words = words[1:]
        else:
            return words
    return words


def counts_of(output: str) -> tuple[int | None, int | None]:
    """(passed, failed) as the runner's summary printed them; None where it printed none."""
    text = output[-OUTPUT_TAIL:]
    for found in (_jest(text), _vitest(text), _cargo(text), _pytest(text), _go(text)):
        if found is not None:
            passed, failed = found
            return _bounded(passed), _bounded(failed)
    return None, None


def _words(summary: str) -> tuple[int, int]:
    passed = failed = 0
    for number, word in WORD_COUNT.findall(summary):
        if word == "passed":
            passed += int(number)
        else:
            failed += int(number)  # pytest's errors are tests that did not pass either
    return passed, failed


def _jest(text: str) -> tuple[int, int] | None:
    found = JEST_TESTS.findall(text)
    return _words(found[-1][0]) if found else None


def _vitest(text: str) -> tuple[int, int] | None:
    found = VITEST_TESTS.findall(text)
    return _words(found[-1]) if found else None


def _cargo(text: str) -> tuple[int, int] | None:
    found = CARGO_RESULT.findall(text)  # one line per test binary
    return (sum(int(p) for p, _ in found), sum(int(f) for _, f in found)) if found else None


def _pytest(text: str) -> tuple[int, int] | None:
    found = PYTEST_SUMMARY.findall(text)
    return _words(found[-1][0]) if found else None


def _go(text: str) -> tuple[int, int] | None:
    found = GO_RESULT.findall(text)  # printed per test with -v only
    return (found.count("PASS"), found.count("FAIL")) if found else None


def _bounded(count: int) -> int | None:
    return count if 0 <= count <= TEST_COUNT_MAX else None


def run_event_data(command: str, runner: str, exit_code: int, output: str) -> dict[str, Any]:
    """The `test.run` event's data."""
    passed, failed = counts_of(output)
    return {"runner": runner, "command": clean_line(command, NAME_MAX), "exit_code": exit_code, "passed": passed,
            "failed": failed}
