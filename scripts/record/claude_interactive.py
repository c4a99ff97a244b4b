"""Drive one interactive Claude Code session in a pseudo-terminal and record its live registry.

Called by scripts/record/claude.sh with the client binary, the working directory and an env file;
types a prompt, a prompt whose tool call waits for permission (declined), a `/rename`, then
`/exit`, and writes every distinct `sessions/<pid>.json` content it saw, in order, to the output
file (one JSON object a line: the step and the entry). Prints the session id.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pexpect

STEP_WAIT_S = 5.0
KEY_PAUSE_S = 0.5  # the TUI drops keys typed while it redraws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("claude")
    parser.add_argument("--cwd", type=Path, required=True)
    parser.add_argument("--env", type=Path, required=True, help="JSON object: the client's whole environment")
    parser.add_argument("--config-dir", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    env = json.loads(args.env.read_text())
    child = pexpect.spawn(args.claude, ["--model", args.model], cwd=str(args.cwd), env=env,
                          dimensions=(40, 120), encoding="utf-8", timeout=30)
    seen: list[dict[str, object]] = []
    texts: set[str] = set()

    def watch(step: str, seconds: float = STEP_WAIT_S) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                child.read_nonblocking(65536, timeout=0.1)
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                return
            for path in sorted((args.config_dir / "sessions").glob("*.json")):
                try:
                    text = path.read_text()
                    entry = json.loads(text)
                except (OSError, ValueError):
                    continue  # being written
                if text not in texts:
                    texts.add(text)
                    seen.append({"step": step, "entry": entry})

    def type_line(text: str) -> None:
        child.send(text)
        time.sleep(KEY_PAUSE_S)
        child.send("\r")

    watch("started", 4.0)
    type_line("say hello")
    watch("answered")
    type_line('run it [[tool:Bash:{"command": "ls /", "description": "list root"}]]')
    watch("asks permission")
    child.send("\x1b")  # decline
    watch("declined", 2.0)
    type_line("/rename billing retries")
    watch("renamed", 3.0)
    type_line("/exit")
    watch("exited", 3.0)
    if child.isalive():
        child.terminate(force=True)
    args.out.write_text("".join(json.dumps(item, sort_keys=True) + "\n" for item in seen))
    ids = {str(item["entry"].get("sessionId")) for item in seen if isinstance(item["entry"], dict)}
    print(ids.pop() if len(ids) == 1 else "")


if __name__ == "__main__":
    main()
