"""A real child process playing the native `codex` binary for the Codex source's process tests.

It opens a file (the session's rollout, or any file) in the given mode and says so, then obeys lines
on stdin: `close` closes the file (Codex closes a finished session's rollout and lives on), `spawn`
starts a command process and prints its pid (Codex starts an approved command), `finish` ends and
reaps the commands.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

PLAYER = """
import subprocess, sys
fh = open(sys.argv[1], sys.argv[2])
print("open", flush=True)
commands = []
for line in sys.stdin:
    word = line.strip()
    if word == "close":
        fh.close()
        print("closed", flush=True)
    elif word == "spawn":
        commands.append(subprocess.Popen(["sleep", "120"]))
        print(commands[-1].pid, flush=True)
    elif word == "finish":
        for command in commands:
            command.kill()
            command.wait()
        commands.clear()
        print("finished", flush=True)
"""


class CodexProcess:
    def __init__(self, path: Path, mode: str = "a") -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", PLAYER, str(path), mode], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "open\n"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _ask(self, word: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def close_file(self) -> None:
        assert self._ask("close") == "closed\n"

    def start_command(self) -> psutil.Process:
        return psutil.Process(int(self._ask("spawn")))

    def finish_commands(self) -> None:
        assert self._ask("finish") == "finished\n"

    def status(self) -> str:
        return str(psutil.Process(self.pid).status())

    def end(self) -> None:
        if self.proc.poll() is None:
            for child in psutil.Process(self.pid).children():
                child.kill()  # reaped once its parent is gone
            self.proc.kill()
        self.proc.wait(timeout=30)
