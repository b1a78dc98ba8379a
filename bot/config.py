"""Typed configuration, loaded from TOML.

:func:`load_config` validates the whole file and raises one
:class:`~bot.errors.ConfigError` that lists every problem with the key path
that caused it (``feeds[2].channels: ...``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import unquote

from bot import limits
from bot.errors import ConfigError, ConfigFileMissing
from bot.models import MAX_SUMMARY_LENGTH, MessageDefaults

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_CONFIG = "herald.toml"

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.I)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.I)
_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


def parse_duration(value: object) -> float:
    """``"30s"``, ``"10m"``, ``"1h30m"``, ``"7d"`` or a number of seconds, to seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"30s\", \"10m\" or \"1h\"")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as \"30s\", \"10m\" or \"1h\"")
    text = value.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"{value!r} is not a duration; use e.g. \"30s\", \"10m\", \"1h\" or \"1h30m\"")
    return total


def parse_size(value: object) -> int:
    """``"5MB"``, ``"512KiB"`` or a number of bytes, to bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as \"5MB\"")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    if not isinstance(value, str):
        raise ValueError("expected a size such as \"5MB\"")
    m = _SIZE_RE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a size; use e.g. \"512KB\", \"5MB\" or a number of bytes")
    size = int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])
    if size <= 0:
        raise ValueError("must be positive")
    return size


def parse_since(text: str | None, now: float) -> float | None:
    """``7d``/``12h`` ago, or an ISO date. Raises ValueError with a readable message."""
    if not text:
        return None
    text = text.strip()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a date (2026-01-31) nor an age (7d, 12h)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


@dataclass(frozen=True)
class DiscordConfig:
    token_env: str = "DISCORD_TOKEN"
    api_base: str | None = None
    gateway_url: str | None = None
    guild_ids: tuple[int, ...] = ()
    alerts_channel: int | None = None
    feed_quota: int = 50

    def token(self) -> str | None:
        value = os.environ.get(self.token_env, "").strip()
        return value or None


@dataclass(frozen=True)
class StorageConfig:
    url: str = "sqlite:///herald.db"


@dataclass(frozen=True)
class PollingConfig:
    interval: float = 600.0
    timeout: float = 20.0
    max_bytes: int = 5_000_000
    concurrency: int = 32
    per_host: int = 4
    max_per_poll: int = 10
    pause_after: float = 86400.0
    max_backoff: float = 4 * 3600.0
    allow_private: bool = False
    parse_workers: int = 0  # 0: one per CPU
    parse_timeout: float = 15.0  # one parse (or HTML conversion) call; longer and its worker is killed


@dataclass(frozen=True)
class HttpConfig:
    listen: str | None = None


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "text"


@dataclass(frozen=True)
class FeedConfig:
    url: str
    name: str | None = None
    channels: tuple[int, ...] = ()
    webhooks: tuple[str, ...] = ()  # names of environment variables holding webhook URLs
    backfill: int = 0
    interval: float | None = None
    max_per_poll: int | None = None
    mention_roles: tuple[int, ...] = ()
    create_thread: bool = False
    username: str | None = None
    avatar_url: str | None = None
    alerts_channel: int | None = None
    guild_id: int | None = None
    # message options: None takes the [defaults] value
    summary_length: int | None = None
    feed_image: bool | None = None


@dataclass(frozen=True)
class Config:
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    polling: PollingConfig = field(default_factory=PollingConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    defaults: MessageDefaults = field(default_factory=MessageDefaults)
    feeds: tuple[FeedConfig, ...] = ()
    path: Path | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def storage_url(self) -> str:
        """The storage URL with a relative SQLite path resolved against the config's folder."""
        url = self.storage.url
        prefix = "sqlite:///"
        if url.startswith(prefix):
            rest = url[len(prefix):]
            if rest != ":memory:" and not rest.startswith("/"):
                return prefix + str((self.base_dir / rest).resolve())
        return url


# --- validation ---------------------------------------------------------------------------


class _Problems(ValueError):
    """Several problems in one value (a list with more than one bad item): each is reported."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# A table's known keys, each with the function that checks and converts its raw TOML value
# (what each returns depends on the key: a str, an int, a list of snowflakes...).
_Fields: TypeAlias = dict[str, Callable[[Any], Any]]


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def table(self, data: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(data, dict):
            self.problems.append(f"{path}: expected a table")
            return None
        return data

    def fields(self, data: dict[str, Any], path: str, spec: _Fields) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            where = f"{path}.{key}" if path else key
            conv = spec.get(key)
            if conv is None:
                known = ", ".join(sorted(spec))
                self.problems.append(f"{where}: unknown key (known keys: {known})")
                continue
            try:
                out[key] = conv(value)
            except _Problems as exc:
                self.problems.extend(f"{where}: {p}" for p in exc.problems)
            except ValueError as exc:
                self.problems.append(f"{where}: {exc}")
        return out


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _nonempty_str(value: Any) -> str:
    text = _str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {type(value).__name__}")
    return value


def _int_range(lo: int, hi: int | None = None) -> Callable[[Any], int]:
    def conv(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {type(value).__name__}")
        if value < lo or (hi is not None and value > hi):
            raise ValueError(f"must be between {lo} and {hi}" if hi is not None else f"must be at least {lo}")
        return value

    return conv


def _snowflake(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not (0 < value < 2**64):
        raise ValueError(f"expected a Discord id (a positive whole number), got {value!r}")
    return value


def _snowflakes(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError("expected a list of Discord ids")
    out, bad = [], []
    for i, item in enumerate(value):
        try:
            out.append(_snowflake(item))
        except ValueError as exc:
            bad.append(f"item {i}: {exc}")
    if bad:
        raise _Problems(bad)
    return tuple(dict.fromkeys(out))


def _mention_roles(value: Any) -> tuple[int, ...]:
    roles = _snowflakes(value)
    if len(roles) > limits.ALLOWED_MENTIONS_ROLES:
        raise ValueError(f"at most {limits.ALLOWED_MENTIONS_ROLES} roles (Discord's limit for one message)")
    return roles


_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_NAME_HINT = "the webhook URL is a secret and never goes in the file"


def _env_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"expected names of environment variables ({_ENV_NAME_HINT})")
    # the bad value itself is never echoed: it may be the webhook URL, a secret
    bad = [f"item {i}: expected the name of an environment variable ({_ENV_NAME_HINT})"
           for i, v in enumerate(value) if not (isinstance(v, str) and _ENV_NAME_RE.fullmatch(v))]
    if bad:
        raise _Problems(bad)
    return tuple(value)


def _http_base(value: Any) -> str:
    text = _nonempty_str(value).rstrip("/")
    if not re.match(r"^https?://", text):
        raise ValueError("expected an http(s) URL")
    return text


def _ws_url(value: Any) -> str:
    text = _nonempty_str(value)
    if not re.match(r"^wss?://", text):
        raise ValueError("expected a ws:// or wss:// URL")
    return text


def _level(value: Any) -> str:
    text = _str(value).upper()
    if text not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected one of debug, info, warning, error, critical")
    return text


def _log_format(value: Any) -> str:
    text = _str(value).lower()
    if text not in {"text", "json"}:
        raise ValueError('expected "text" or "json"')
    return text


def _positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


def _listen(value: Any) -> str:
    text = _nonempty_str(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError('expected "HOST:PORT", e.g. "127.0.0.1:8080"')
    return text


def _feed_url(value: Any) -> str:
    text = _nonempty_str(value)
    if not re.match(r"^(https?://|file:)", text, re.I):
        raise ValueError("expected an http(s):// or file: URL")
    return text


def _resolve_file_url(url: str, base: Path) -> str:
    """``file:relative/path`` is relative to the config file's folder."""
    if not url.lower().startswith("file:"):
        return url
    rest = url[5:]
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):  # file://host/path is not supported; treat as relative
            rest = "./" + rest
    path = Path(unquote(rest))
    if not path.is_absolute():
        path = (base / path).resolve()
    return path.as_uri()


_DISCORD: _Fields = {
    "token_env": _nonempty_str,
    "api_base": _http_base,
    "gateway_url": _ws_url,
    "guild_ids": _snowflakes,
    "alerts_channel": _snowflake,
    "feed_quota": _int_range(0, 100_000),
}
_STORAGE: _Fields = {"url": _nonempty_str}
_POLLING: _Fields = {
    "interval": _positive_duration,
    "timeout": _positive_duration,
    "max_bytes": parse_size,
    "concurrency": _int_range(1, 10_000),
    "per_host": _int_range(1, 1000),
    "max_per_poll": _int_range(1, 1000),
    "pause_after": _positive_duration,
    "max_backoff": _positive_duration,
    "allow_private": _bool,
    "parse_workers": _int_range(0, 256),
    "parse_timeout": _positive_duration,
}
_HTTP: _Fields = {"listen": _listen}
_LOGGING: _Fields = {"level": _level, "format": _log_format}
# per-feed message options: settable in [[feeds]], with their global default in [defaults]
_MESSAGE_OPTIONS: _Fields = {
    "summary_length": _int_range(0, MAX_SUMMARY_LENGTH),
    "feed_image": _bool,
}
_FEED: _Fields = {
    "url": _feed_url,
    "name": _nonempty_str,
    "channels": _snowflakes,
    "webhooks": _env_names,
    "backfill": _int_range(0, 1000),
    "interval": _positive_duration,
    "max_per_poll": _int_range(1, 1000),
    "mention_roles": _mention_roles,
    "create_thread": _bool,
    "username": _nonempty_str,
    "avatar_url": _http_base,
    "alerts_channel": _snowflake,
    "guild_id": _snowflake,
    **_MESSAGE_OPTIONS,
}
_SECTIONS: dict[str, _Fields] = {
    "discord": _DISCORD,
    "storage": _STORAGE,
    "polling": _POLLING,
    "http": _HTTP,
    "logging": _LOGGING,
    "defaults": _MESSAGE_OPTIONS,
}


def config_from_dict(data: dict[str, Any], path: Path | None = None) -> Config:
    """Validate a parsed TOML document. Raises ConfigError listing every problem."""
    check = _Checker()
    sections: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if key == "feeds":
            continue
        if key not in _SECTIONS:
            check.problems.append(f"{key}: unknown section (known: {', '.join(sorted([*_SECTIONS, 'feeds']))})")
            continue
        table = check.table(value, key)
        if table is not None:
            sections[key] = check.fields(table, key, _SECTIONS[key])

    feeds: list[FeedConfig] = []
    raw_feeds = data.get("feeds", [])
    if not isinstance(raw_feeds, list):
        check.problems.append("feeds: expected an array of tables ([[feeds]])")
        raw_feeds = []
    seen_names: dict[str, int] = {}
    seen_urls: dict[str, int] = {}
    for i, raw in enumerate(raw_feeds):
        where = f"feeds[{i}]"
        table = check.table(raw, where)
        if table is None:
            continue
        values = check.fields(table, where, _FEED)
        if "url" not in table:
            check.problems.append(f"{where}.url: missing (every feed needs a url)")
        # a target that is present but invalid was reported above; do not also call it missing
        bad_targets = any(k in table and k not in values for k in ("channels", "webhooks"))
        if not values.get("channels") and not values.get("webhooks") and not bad_targets:
            if "channels" in table:
                check.problems.append(f"{where}.channels: must list at least one channel id")
            else:
                check.problems.append(f"{where}.channels: missing (give at least one channel id, or webhooks)")
        if "url" not in values:
            continue
        name = values.get("name")
        if name is not None:
            if name.lower() in seen_names:
                check.problems.append(f"{where}.name: {name!r} is already used by feeds[{seen_names[name.lower()]}]")
            seen_names[name.lower()] = i
        values["url"] = _resolve_file_url(values["url"], path.parent if path else Path.cwd())
        first = seen_urls.setdefault(values["url"], i)
        if first != i:  # one feed row per URL: the second table's name and settings would vanish
            check.problems.append(
                f"{where}.url: the same feed as feeds[{first}] ({values['url']}); list all its channels and webhooks "
                f"in one [[feeds]] table")
            continue
        feeds.append(FeedConfig(**values))

    if check.problems:
        raise ConfigError(check.problems)
    return Config(
        discord=DiscordConfig(**sections.get("discord", {})),
        storage=StorageConfig(**sections.get("storage", {})),
        polling=PollingConfig(**sections.get("polling", {})),
        http=HttpConfig(**sections.get("http", {})),
        logging=LoggingConfig(**sections.get("logging", {})),
        defaults=MessageDefaults(**sections.get("defaults", {})),
        feeds=tuple(feeds),
        path=path,
    )


def file_url_path(url: str) -> Path | None:
    """The local path of a ``file:`` URL (as :func:`_resolve_file_url` writes them), else None."""
    if not url.lower().startswith("file:"):
        return None
    rest = url[5:]
    if rest.startswith("//"):
        rest = rest[2:]
    return Path(unquote(rest))


def unreadable_files(config: Config) -> list[str]:
    """One problem per ``file:`` feed whose file does not exist or cannot be read: ``run`` would
    fail to fetch it on every poll."""
    problems = []
    for i, f in enumerate(config.feeds):
        path = file_url_path(f.url)
        if path is None:
            continue
        where = f"feeds[{i}].url"
        if not path.exists():
            problems.append(f"{where}: {path} does not exist (a relative file: URL is relative to the config file's "
                            "folder)")
        elif not path.is_file():
            problems.append(f"{where}: {path} is not a file")
        elif not os.access(path, os.R_OK):
            problems.append(f"{where}: {path} cannot be read by this user; "
                            "make it readable for the user Herald runs as")
    return problems


def homeless_feeds(config: Config) -> list[str]:
    """Feeds whose Discord server Herald may not learn: only webhooks, no ``guild_id``, and a webhook
    variable that is not set (with it set, ``run`` asks Discord which server the webhook is in)."""
    notes = []
    for i, f in enumerate(config.feeds):
        if f.channels or f.guild_id is not None:
            continue
        unset = [w for w in f.webhooks if not os.environ.get(w, "").strip()]
        if len(unset) == len(f.webhooks):
            notes.append(f"feeds[{i}]{f' ({f.name})' if f.name else ''}: posts only through webhooks whose variables "
                         f"are not set here (${', $'.join(unset)}), so its Discord server cannot be known and /feed "
                         "list, /search and /feed resume there will not see it; set guild_id = <server id> in this "
                         "[[feeds]] table (Discord: right-click the server → Copy Server ID)")
    return notes


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a TOML config file (``herald.toml`` when no path is given)."""
    p = Path(path if path is not None else os.environ.get("HERALD_CONFIG", DEFAULT_CONFIG))
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigFileMissing(p.resolve()) from None
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{p}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{p}: not valid TOML: {exc}"]) from None
    used = _apply_env_overrides(data)
    try:
        return config_from_dict(data, p.resolve())
    except ConfigError as exc:
        raise ConfigError([_name_env(problem, used) for problem in exc.problems]) from None


# Environment variables that override one key of the file (containers, systemd units):
# variable → (section, key). A relative SQLite path in HERALD_STORAGE_URL is still relative to the
# config file's folder, so give an absolute one (sqlite:////data/herald.db).
ENV_OVERRIDES = {
    "HERALD_STORAGE_URL": ("storage", "url"),
    "HERALD_HTTP_LISTEN": ("http", "listen"),
}


def _apply_env_overrides(data: dict[str, Any]) -> dict[str, str]:
    """Sets the keys whose variable is set; returns {"section.key": variable} for error messages."""
    used: dict[str, str] = {}
    for var, (section, key) in ENV_OVERRIDES.items():
        value = os.environ.get(var, "").strip()
        if not value:
            continue
        table = data.setdefault(section, {})
        if isinstance(table, dict):
            table[key] = value
            used[f"{section}.{key}"] = var
    return used


def _name_env(problem: str, used: dict[str, str]) -> str:
    for where, var in used.items():
        if problem.startswith(where + ":"):
            return f"{where} (from ${var}){problem[len(where):]}"
    return problem
