"""Logging: human-readable or JSON lines, with secrets redacted from every record.

Fields that describe what a line is about (``feed``, ``target``, ``entry``, ``delivery``) are
bound once, for a block of code, with :func:`log_fields`; :class:`ContextFilter` copies them
onto every record logged meanwhile (in that task), so no call passes them with ``extra=``::

    with log_fields(feed=feed.name or feed.url):
        ...  # every log line here carries feed=
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, TextIO

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None

# Anything shaped like a bot token or a webhook URL is redacted even if it was never registered.
_TOKEN_SHAPE = re.compile(r"[A-Za-z\d_-]{23,28}\.[A-Za-z\d_-]{6,7}\.[A-Za-z\d_-]{27,}")
_WEBHOOK_SHAPE = re.compile(r"(/webhooks/\d+/)[A-Za-z0-9_.-]+")
_AUTH_HEADER = re.compile(r"(Authorization['\"]?\s*[:=]\s*['\"]?(?:Bot|Bearer)\s+)[^'\"\s,}]+", re.I)


def register_secret(value: str | None) -> None:
    """Every later log line has ``value`` replaced by ``[REDACTED]``."""
    global _pattern
    if not value or len(value) < 6:
        return
    with _secrets_lock:
        _secrets.add(value)
        _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub("[REDACTED]", text)
    text = _TOKEN_SHAPE.sub("[REDACTED]", text)
    text = _WEBHOOK_SHAPE.sub(r"\1[REDACTED]", text)
    return _AUTH_HEADER.sub(r"\1[REDACTED]", text)


_fields: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "herald_log_fields", default=MappingProxyType({}))


@contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """Binds ``fields`` (added to those bound already; None values are left out) to every
    record logged in this block, by this task or thread. Tasks started inside the block
    inherit them, as asyncio copies the context."""
    bound = {**_fields.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _fields.set(bound)
    try:
        yield
    finally:
        _fields.reset(token)


def bound_fields() -> Mapping[str, Any]:
    """The fields bound by :func:`log_fields` at this point."""
    return _fields.get()


class ContextFilter(logging.Filter):
    """Adds the fields bound by :func:`log_fields` to a record; a field the call passed with
    ``extra=`` wins. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _fields.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


_CONTEXT = ContextFilter()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with :class:`ContextFilter` on it, so that its records carry
    the bound fields for every handler (tests' captures included), not only Herald's own."""
    logger = logging.getLogger(name)
    if _CONTEXT not in logger.filters:
        logger.addFilter(_CONTEXT)
    return logger


_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "", None, None))) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        if extras:
            text += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return redact(text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_"):
                data[k] = v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
        if record.exc_info:
            data["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return redact(json.dumps(data, ensure_ascii=False, default=str))


def setup_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Configures the root logger (Herald's and discord.py's loggers) to one stream, stderr by default."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_CONTEXT)  # records of other loggers (discord.py's) logged in a bound block too
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_herald", False):
            root.removeHandler(h)
    handler._herald = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # Python warnings become log records too (one JSON line each, redacted)
    # discord.py is chatty at DEBUG and logs gateway payloads; keep it at INFO unless debugging
    logging.getLogger("discord").setLevel(max(logging.INFO, root.level) if level.upper() != "DEBUG" else logging.INFO)
    logging.getLogger("discord.http").setLevel(logging.WARNING if level.upper() != "DEBUG" else logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
