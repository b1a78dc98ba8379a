"""The one exception hierarchy of Herald.

Every error Herald raises on purpose derives from :class:`HeraldError`, so the
CLI and the Discord error handler can tell expected failures (a clear message
for the user) from bugs (a traceback in the log with an error id).
"""

from __future__ import annotations


class HeraldError(Exception):
    """Base class of every error Herald raises on purpose."""


class ConfigError(HeraldError):
    """The configuration is invalid. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


class ConfigFileMissing(ConfigError):
    """The config file does not exist: not an invalid configuration, a missing one."""

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__([f"{path}: no such file"])
        self.args = (f"config file {path} does not exist; pass --config PATH or set $HERALD_CONFIG, or start "
                     "from the example: cp examples/herald.toml herald.toml (then edit its channels)",)

    def __str__(self) -> str:
        return str(self.args[0])


class StorageError(HeraldError):
    """The database cannot be opened, migrated, read or written."""


class FeedError(HeraldError):
    """Fetching or parsing one feed failed. The feed is recorded with this error."""

    #: a short, stable category used in metrics and status ("http", "timeout", ...)
    kind = "error"


class FetchError(FeedError):
    kind = "fetch"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class FeedGone(FetchError):
    """The server answered 410 Gone: the feed is retired."""

    kind = "gone"


class TooLarge(FetchError):
    kind = "too_large"


class FetchTimeout(FetchError):
    kind = "timeout"


class ParseError(FeedError):
    kind = "parse"


class UnsafeURL(HeraldError):
    """A URL points somewhere Herald refuses to go (private address, bad scheme)."""


class DeliveryError(HeraldError):
    """Sending one announcement failed."""


class TransientDeliveryError(DeliveryError):
    """Try again later (5xx, 429, network). ``retry_after`` in seconds when known."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Retrying will not help.

    ``target_broken`` is true when the whole target is unusable (403 missing
    access, 404 unknown channel): its subscription is paused. Otherwise only
    this one delivery failed (a 400 for a payload Discord rejects).
    """

    def __init__(self, message: str, *, target_broken: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.target_broken = target_broken
        self.status = status


class UserError(HeraldError):
    """Bad input from a person (a command option, a URL): shown to them as it is."""
