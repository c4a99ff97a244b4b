"""Textual's own terminal driver, also appending each write (with the terminal's size) to the JSON-lines
file named by HEADY_RECORD_WRITES. Loaded through TEXTUAL_DRIVER by scripts/record/terminal.py."""

from __future__ import annotations

import json
import os
import sys

from textual.drivers.linux_driver import LinuxDriver


class RecordingDriver(LinuxDriver):
    def write(self, data: str) -> None:
        size = os.get_terminal_size(sys.__stderr__.fileno())
        with open(os.environ["HEADY_RECORD_WRITES"], "a", encoding="utf-8") as out:
            out.write(json.dumps([size.columns, size.lines, data]) + "\n")
        super().write(data)
