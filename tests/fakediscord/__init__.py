"""A faithful fake Discord (REST + gateway) on 127.0.0.1 for Herald's tests. See README.md."""

from . import limits, permissions
from .helpers import DiscordPyPatch, point_discord_py_at
from .records import InteractionFailed, InteractionRecord, RecordedRequest
from .server import FakeDiscord
from .validation import ApiError

__all__ = [
    "ApiError",
    "DiscordPyPatch",
    "FakeDiscord",
    "InteractionFailed",
    "InteractionRecord",
    "RecordedRequest",
    "limits",
    "permissions",
    "point_discord_py_at",
]
