#!/usr/bin/env python3
"""Drive a real `opencode serve` through the sessions heady must read right, and save what it wrote.

Called by scripts/record/opencode.sh, which installs opencode, starts the fake model server and
sets HOME / XDG dirs to a temporary directory. Sessions (each prompt's marker picks the fake
server's behaviour from the schedule the shell script writes):

- an unprompted session (created, never used);
- a clean turn, then a manual compaction (`/summarize` with auto=false);
- a tool call (`RUN: ...`) in a second directory of the same server;
- three turns on opencode's anthropic provider (tests/fake_anthropic.py: 5 m / 1 h cache writes);
- a 429 then success; a 5xx that never succeeds (aborted after opencode's retries); a broken stream;
  a 400 (not retried);
- a standalone `opencode run` (its own server: only opencode.db sees it);
- a session cut off by killing the server mid-tool, then the server restarted.

Saved into the output directory: `global-event.sse` (the raw `/global/event` stream of the first
server), `sessions.json` and `messages/<session>.json` (REST answers after the restart),
`opencode.db` (a compact copy), `meta.json` (session ids by scenario, versions).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

USER = "opencode"
WAIT_S = 120.0


class Serve:
    """One `opencode serve` child on loopback, with its password."""

    def __init__(self, binary: str, port: int, password: str, cwd: Path, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "OPENCODE_SERVER_PASSWORD": password}
        self.proc = subprocess.Popen([binary, "serve", "--hostname", "127.0.0.1", "--port", str(port)],
                                     cwd=cwd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, auth=(USER, password), timeout=WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                if self.client.get("/global/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("opencode serve did not come up")
            time.sleep(0.2)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.client.close()


def record_events(url: str, password: str, out: Path, stop: threading.Event) -> None:
    with httpx.Client(auth=(USER, password), timeout=httpx.Timeout(10.0, read=None)) as client, \
            client.stream("GET", f"{url}/global/event") as response, out.open("w", encoding="utf-8") as fh:
        try:
            for line in response.iter_lines():
                fh.write(line + "\n")
                fh.flush()
                if stop.is_set():
                    return
        except httpx.TransportError:
            return  # the server was killed


def new_session(serve: Serve, directory: Path) -> str:
    answer = serve.client.post("/session", params={"directory": str(directory)}, json={})
    answer.raise_for_status()
    return str(answer.json()["id"])


def prompt(serve: Serve, sid: str, directory: Path, text: str, model: dict[str, str] | None = None) -> None:
    body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
    if model is not None:
        body["model"] = model
    serve.client.post(f"/session/{sid}/message", params={"directory": str(directory)}, json=body).raise_for_status()


def prompt_async(serve: Serve, sid: str, directory: Path, text: str) -> None:
    serve.client.post(f"/session/{sid}/prompt_async", params={"directory": str(directory)},
                      json={"parts": [{"type": "text", "text": text}]}).raise_for_status()


def wait_until(what: str, check: Any, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.3)


def status_of(serve: Serve, directory: Path, sid: str) -> str:
    listed = serve.client.get("/session/status", params={"directory": str(directory)}).json()
    entry = listed.get(sid) if isinstance(listed, dict) else None
    return str(entry.get("type")) if isinstance(entry, dict) else "idle"


def tool_running(serve: Serve, sid: str, directory: Path) -> bool:
    messages = serve.client.get(f"/session/{sid}/message", params={"directory": str(directory)}).json()
    return any(part.get("type") == "tool" and (part.get("state") or {}).get("status") == "running"
               for message in messages for part in message.get("parts", []))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--opencode", required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--provider", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--anthropic-model", required=True, help="a model of opencode's anthropic provider")
    parser.add_argument("--db", type=Path, required=True, help="opencode.db under the temporary data dir")
    args = parser.parse_args()
    password = "recording-only-password"
    alpha, beta, gamma = args.work / "alpha", args.work / "beta", args.work / "gamma"
    for directory in (alpha, beta, gamma):
        directory.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.work / "serve.log"
    meta: dict[str, Any] = {"password_user": USER}

    serve = Serve(args.opencode, args.port, password, args.work, log)
    stop = threading.Event()
    recorder = threading.Thread(target=record_events, args=(serve.url, password, args.out / "global-event.sse", stop))
    recorder.start()
    time.sleep(1.0)

    meta["unprompted"] = new_session(serve, alpha)
    meta["clean"] = sid = new_session(serve, alpha)
    prompt(serve, sid, alpha, "hello")
    serve.client.post(f"/session/{sid}/summarize", params={"directory": str(alpha)},
                      json={"providerID": args.provider, "modelID": args.model, "auto": False}).raise_for_status()
    meta["tool"] = sid = new_session(serve, beta)
    prompt(serve, sid, beta, "RUN: echo tool-output")
    # Faults come on a session's second prompt: the first one also goes to opencode's title
    # request, which would take the fault instead.
    meta["retry_429"] = sid = new_session(serve, alpha)
    prompt(serve, sid, alpha, "hi")
    prompt(serve, sid, alpha, "RETRY429 once")
    meta["broken"] = sid = new_session(serve, alpha)
    prompt(serve, sid, alpha, "hi")
    prompt(serve, sid, alpha, "BROKEN once")
    meta["fail_500"] = sid = new_session(serve, alpha)
    prompt(serve, sid, alpha, "hi")
    prompt_async(serve, sid, alpha, "FAIL500 always")
    time.sleep(20.0)  # opencode retries 5xx with back-off; let a few attempts happen, then give up
    serve.client.post(f"/session/{sid}/abort", params={"directory": str(alpha)}).raise_for_status()
    wait_until("the aborted session to go idle", lambda: status_of(serve, alpha, sid) == "idle")

    meta["anthropic"] = sid = new_session(serve, alpha)
    for turn in range(3):
        prompt(serve, sid, alpha, f"turn {turn}", {"providerID": "anthropic", "modelID": args.anthropic_model})
    meta["bad_request"] = sid = new_session(serve, alpha)
    prompt(serve, sid, alpha, "hi")
    prompt(serve, sid, alpha, "BADREQUEST always")

    # opencode takes its directory from $PWD.
    subprocess.run([args.opencode, "run", "standalone hello"], cwd=gamma, env={**os.environ, "PWD": str(gamma)},
                   check=True, timeout=WAIT_S, stdout=subprocess.DEVNULL)
    meta["standalone_run"] = sqlite3.connect(args.db).execute(
        "SELECT id FROM session WHERE directory = ? ORDER BY time_created DESC LIMIT 1", (str(gamma),)).fetchone()[0]

    meta["cut_off"] = sid = new_session(serve, beta)
    prompt_async(serve, sid, beta, "RUN: sleep 30")
    wait_until("the tool to run", lambda: tool_running(serve, sid, beta))
    time.sleep(1.0)  # let the event stream carry the running tool
    stop.set()
    serve.kill()
    recorder.join(timeout=WAIT_S)

    serve = Serve(args.opencode, args.port, password, args.work, log)
    try:
        sessions = serve.client.get("/experimental/session").json()
        (args.out / "sessions.json").write_text(json.dumps(sessions, indent=1), encoding="utf-8")
        statuses = {}
        (args.out / "messages").mkdir(exist_ok=True)
        for session in sessions:
            directory = session["directory"]
            messages = serve.client.get(f"/session/{session['id']}/message", params={"directory": directory}).json()
            (args.out / "messages" / f"{session['id']}.json").write_text(json.dumps(messages, indent=1), encoding="utf-8")
            statuses[session["id"]] = status_of(serve, Path(directory), session["id"])
        meta["status_after_restart"] = statuses
    finally:
        serve.kill()

    db = args.out / "opencode.db"
    db.unlink(missing_ok=True)
    source = sqlite3.connect(args.db)
    source.execute("VACUUM INTO ?", (str(db),))
    source.close()
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")


if __name__ == "__main__":
    main()
