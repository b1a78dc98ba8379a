"""Pointing the real discord.py at a FakeDiscord."""

from __future__ import annotations

from typing import Any, Optional


class DiscordPyPatch:
    """Returned by point_discord_py_at: call it (or leave the ``with`` block) to restore discord.py."""

    def __init__(self, route_base: str, default_gateway: Any) -> None:
        self._route_base = route_base
        self._default_gateway = default_gateway
        self.restored = False

    def restore(self) -> None:
        if self.restored:
            return
        import discord.gateway
        import discord.http

        discord.http.Route.BASE = self._route_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._default_gateway
        self.restored = True

    __call__ = restore

    def __enter__(self) -> "DiscordPyPatch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()


def point_discord_py_at(fake: Any) -> DiscordPyPatch:
    """Make discord.py's REST (Route.BASE) and gateway (DEFAULT_GATEWAY) use ``fake``.

    Returns a DiscordPyPatch usable as ``restore()`` or as a context manager.
    """
    import discord.gateway
    import discord.http
    import yarl

    patch = DiscordPyPatch(discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    return patch
