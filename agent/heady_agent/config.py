"""The `[agent]` section of config.toml (the only part heady-agent reads), and path resolution."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

APP_NAME = "heady"
MIN_PUBLIC_TOKEN_BYTES = 16
SOURCE_NAMES = ("claude-code", "codex", "opencode", "managed", "synthetic", "ingest")  # "ingest": old name of "opencode"
SCENARIOS = (
    "calm",
    "queue-overflow",
    "error-storm",
    "hot-node",
    "slow-provider",
    "runaway-cost",
    "idle-sessions",
    "compaction",
    "node-loss",
)


class ConfigError(Exception):
    """A config problem, with a one-line message naming the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaudeCodeConfig(_Section):
    roots: list[str] = Field(default_factory=lambda: ["~/.claude", "~/.config/claude"])
    poll_interval_s: float = Field(default=1.0, gt=0)


class CodexConfig(_Section):
    roots: list[str] = Field(default_factory=lambda: ["~/.codex"])
    poll_interval_s: float = Field(default=1.0, gt=0)


# What every managed session (and the embedded agent itself) gets from the environment it was
# started in; everything else must be named in `env_pass`. No token, key or secret is on this list.
BASE_ENV = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE",
    "LC_MESSAGES", "LC_NUMERIC", "LC_TIME", "TERM", "TZ", "TMPDIR",
)  # fmt: skip
# What the agent process itself reads besides BASE_ENV (its config and data dirs, the transcript
# roots of its sources, the Python it runs on), when a console starts it with an explicit environment.
AGENT_ENV = (
    "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR",
    "CLAUDE_CONFIG_DIR", "CODEX_HOME", "PYTHONPATH", "VIRTUAL_ENV",
)  # fmt: skip
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
PROMPT = "{prompt}"
END_OF_OPTIONS = "--"


def prompt_template_problem(template: list[str]) -> str | None:
    """Why an argv template could let prompt text become a command-line option, or None.

    The text may fill a whole argument only after a "--" argument (end of options), or be the
    value inside an "--option={prompt}" argument; anywhere else text such as
    "--dangerously-skip-permissions" would be parsed as an option.
    """
    after_end = False
    for part in template:
        if part == END_OF_OPTIONS:
            after_end = True
        if PROMPT not in part:
            continue
        if part == PROMPT and after_end:
            continue
        head = part.split(PROMPT, 1)[0]
        if head.startswith("-") and "=" in head:
            continue
        return (
            f"{part!r} lets prompt text become an option: put {PROMPT} as a whole argument after a "
            f'"--" argument (e.g. ["claude", "-p", "--", "{PROMPT}"]), or use "--option={PROMPT}", '
            "or set prompt_stdin = true"
        )
    return None


class ManagedConfig(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    command: list[str] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # Names of the agent's environment variables the session also gets (BASE_ENV always).
    env_pass: list[str] = Field(default_factory=list)
    max_concurrent: int = Field(default=1, ge=0)
    # Work items (no extra args) queued when the agent starts with an empty journal; see docs/agent.md.
    instances: int = Field(default=0, ge=0, le=10_000)
    # argv template for prompt injection; "{prompt}" and "{session}" are substituted per argument,
    # in one pass (text substituted for one is never searched for the other).
    prompt_command: list[str] | None = None
    # true: the prompt text goes to prompt_command's stdin, never into its argv.
    prompt_stdin: bool = False
    model: str | None = None

    @field_validator("env_pass", "env")
    @classmethod
    def _env_names(cls, value: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        for name in value:
            if not re.match(ENV_NAME, name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @model_validator(mode="after")
    def _prompt_is_data(self) -> "ManagedConfig":
        template = self.prompt_command or []
        if self.prompt_stdin:
            if any(PROMPT in part for part in template):
                raise ValueError(f"prompt_command: with prompt_stdin = true, {PROMPT} must not appear in the argv")
            if not template:
                raise ValueError("prompt_stdin needs a prompt_command")
            return self
        problem = prompt_template_problem(template)
        if problem:
            raise ValueError(f"prompt_command: {problem}")
        return self


class OpencodeConfig(_Section):
    opencode_url: str = Field(default="http://127.0.0.1:4096", pattern=r"^https?://")  # `opencode serve`
    reconnect_max_s: float = Field(default=30.0, gt=0)
    # HTTP basic auth for a server started with OPENCODE_SERVER_PASSWORD (never in the URL).
    username: str = Field(default="opencode", min_length=1)
    password_env: str | None = "OPENCODE_SERVER_PASSWORD"
    password_file: str | None = None
    # opencode's SQLite store (opencode >= 1.2); default: $XDG_DATA_HOME/opencode/opencode.db.
    # It holds every session, also `opencode run` and the TUI, which run their own server.
    db_path: str | None = None
    db_poll_interval_s: float = Field(default=2.0, gt=0)

    @field_validator("opencode_url")
    @classmethod
    def _no_credentials_in_url(cls, value: str) -> str:
        if "@" in urlsplit(value).netloc:
            raise ValueError("opencode_url must not carry credentials; use password_env or password_file")
        return value

    def resolve_password(self) -> str | None:
        """The server password: the file's first line, else the environment variable (unset: none)."""
        return read_token(None, self.password_file, self.password_env, where="agent.opencode.password",
                          env_required=False)

    def resolve_db_path(self) -> Path:
        if self.db_path:
            return Path(self.db_path).expanduser()
        data_home = os.environ.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
        return Path(data_home) / "opencode" / "opencode.db"


class SyntheticConfig(_Section):
    scenario: Literal[
        "calm",
        "queue-overflow",
        "error-storm",
        "hot-node",
        "slow-provider",
        "runaway-cost",
        "idle-sessions",
        "compaction",
        "node-loss",
    ] = "calm"
    node_index: int = Field(default=0, ge=0)  # which simulated node of the fleet this agent plays
    node_count: int = Field(default=1, ge=1)
    seed: int = 0
    speed: float = Field(default=1.0, gt=0)  # event-rate multiplier (tests run fast fleets)


class OtlpConfig(_Section):
    # OTLP receivers for the clients' own telemetry (docs/sources.md "otlp"); None: off.
    listen: str | None = None  # OTLP/HTTP (4318 by custom)
    grpc_listen: str | None = None  # OTLP/gRPC (4317 by custom)

    @field_validator("listen", "grpc_listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value


class AgentConfig(_Section):
    listen: str = "127.0.0.1:7420"
    token: str | None = None
    token_env: str | None = "HEADY_AGENT_TOKEN"
    token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    metrics_public: bool = False
    interval_s: float = Field(default=1.0, ge=0.05)
    sources: list[str] = Field(default_factory=lambda: ["claude-code", "codex"])
    node_id: str | None = None  # default: hostname
    labels: dict[str, str] = Field(default_factory=dict)
    journal_path: str | None = None  # default: <data dir>/agent-journal.db
    retention_days: float = Field(default=7.0, gt=0)
    retention_rows: int = Field(default=1_000_000, ge=1000)
    # Browser pages send an Origin header; any other WebSocket client (the console) sends none.
    allowed_origins: list[str] = Field(default_factory=list)
    max_connections: int = Field(default=32, ge=1, le=10_000)
    # Frames waiting for one connection; a live subscriber past this is closed and resumes from its cursor.
    peer_queue_bytes: int = Field(default=2 * 1024 * 1024, ge=4096)
    max_queue: int = Field(default=10_000, ge=0, le=1_000_000)  # queued work items on this node
    claude_code: ClaudeCodeConfig = Field(default_factory=ClaudeCodeConfig)
    codex: CodexConfig = Field(default_factory=CodexConfig)
    managed: list[ManagedConfig] = Field(default_factory=list)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    otlp: OtlpConfig = Field(default_factory=OtlpConfig)
    # `[agent.ingest]` is the section's old name, still read.
    opencode: OpencodeConfig = Field(default_factory=OpencodeConfig,
                                     validation_alias=AliasChoices("opencode", "ingest"))

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in SOURCE_NAMES:
                raise ValueError(f"unknown source {name!r} (known: {', '.join(SOURCE_NAMES)})")
        if "opencode" in value and "ingest" in value:
            raise ValueError("sources: 'ingest' is the old name of 'opencode'; list it once")
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        parse_listen(value)
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> "AgentConfig":
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key must be set together")
        names = [m.name for m in self.managed]
        if len(names) != len(set(names)):
            raise ValueError("managed names must be unique")
        secret = {"HEADY_AGENT_TOKEN", self.token_env or "HEADY_AGENT_TOKEN"}
        for m in self.managed:
            leaked = secret & (set(m.env_pass) | set(m.env))
            if leaked:
                raise ValueError(f"managed {m.name!r}: the agent's token ${sorted(leaked)[0]} is never given to a session")
        return self

    def token_problem(self, host: str) -> str | None:
        """Why the resolved token is not good enough to listen on `host`, or None."""
        if is_loopback(host):
            return None
        token = self.resolve_token()
        if not token:
            return "without a token"
        if len(token.encode()) < MIN_PUBLIC_TOKEN_BYTES:
            return f"with a token shorter than {MIN_PUBLIC_TOKEN_BYTES} bytes (`heady-agent token` makes a good one)"
        return None

    def resolve_token(self) -> str | None:
        """The bearer token: `token`, else the file, else the environment variable (unset: none)."""
        return read_token(self.token, self.token_file, self.token_env, where="agent", env_required=False)


def read_token(
    token: str | None, token_file: str | None, token_env: str | None, *, where: str, env_required: bool
) -> str | None:
    """A bearer token from config: inline, else the first line of a file, else an environment
    variable. Errors name the config key (`where`) but never the token."""
    if token:
        return token
    if token_file:
        path = Path(token_file).expanduser()
        try:
            return path.read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"{where}.token_file: cannot read {path}: {exc.strerror}") from None
    if token_env:
        value = os.environ.get(token_env)
        if not value and env_required:
            raise ConfigError(f"{where}.token_env: ${token_env} is not set")
        return value or None
    return None


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"listen must be HOST:PORT, got {value!r}")
    host = host.strip("[]")
    try:
        port_no = int(port)
    except ValueError:
        raise ValueError(f"listen port must be a number, got {port!r}") from None
    if not 0 <= port_no <= 65535:
        raise ValueError(f"listen port out of range: {port_no}")
    return host, port_no


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also IPv4-mapped) or the name localhost; any other name counts as public."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def session_environment(names: list[str], extra: Mapping[str, str]) -> dict[str, str]:
    """An explicit environment: BASE_ENV and `names` taken from this process's environment, then `extra`."""
    env = {name: os.environ[name] for name in (*BASE_ENV, *names) if name in os.environ}
    env.update(extra)
    return env


def agent_environment(section: Mapping[str, Any]) -> dict[str, str]:
    """The environment a console gives an agent it starts (an `[agent]` table as plain data):
    BASE_ENV, AGENT_ENV and what its managed entries pass on; no token, key or webhook of the console."""
    passed = [name for entry in section.get("managed") or [] for name in entry.get("env_pass") or []]
    return session_environment([*AGENT_ENV, *passed], {})


def config_path(explicit: str | None = None) -> Path:
    """--config, else $HEADY_CONFIG, else the platformdirs config dir."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("HEADY_CONFIG")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def read_toml(path: Path, *, required: bool) -> dict[str, Any]:
    """The parsed file, {} when it is absent and not required; ConfigError with one line otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: config file not found") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def validation_message(path: Path, exc: ValidationError, prefix: str = "") -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    where = f"{prefix}{where}" if where else prefix.rstrip(".")
    msg = err.get("msg", "invalid")
    return f"{path}: {where}: {msg}" if where else f"{path}: {msg}"


def load_agent_config(explicit: str | None = None) -> tuple[AgentConfig, Path]:
    path = config_path(explicit)
    raw = read_toml(path, required=explicit is not None)
    section = raw.get("agent", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: agent: must be a table")
    try:
        return AgentConfig.model_validate(section), path
    except ValidationError as exc:
        raise ConfigError(validation_message(path, exc, "agent.")) from None
