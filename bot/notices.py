"""Notices about feeds and targets: what the core reports, and the text a person reads.

The core (bot/app.py) says *what* happened with a :class:`FeedPaused` or :class:`TargetBroken`
value and hands it to a :class:`Notifier` given at construction; it writes no Discord Markdown.
:func:`text` turns a notice into the message posted in Discord: pure, every untrusted part (a
feed's own title, a server's reason phrase) escaped. A notifier decides where a notice goes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Literal, Protocol

from bot import escape

NoticeKind = Literal["feed", "target"]


@dataclass(frozen=True, slots=True)
class FeedPaused:
    """A feed was paused (it failed too long, or its server said it is gone)."""

    feed_id: int
    name: str  # the feed's name, else its own title, else its URL: untrusted
    reason: str
    command_name: str | None = None  # the name ``herald feeds resume`` takes, when it has one

    @property
    def kind(self) -> NoticeKind:
        return "feed"


@dataclass(frozen=True, slots=True)
class BrokenFeed:
    """A feed that announced into a broken target."""

    id: int
    name: str


@dataclass(frozen=True, slots=True)
class TargetBroken:
    """Discord refused a target (deleted channel, lost permission); its subscriptions are paused.

    ``feed_id`` is the feed whose notice routes are used: one with somewhere left to take it."""

    feed_id: int | None
    target: str
    channel_id: int | None
    feeds: tuple[BrokenFeed, ...]
    reason: str

    @property
    def kind(self) -> NoticeKind:
        return "target"


Notice = FeedPaused | TargetBroken


class Notifier(Protocol):
    """Where the core's notices go (Discord channels in the bot; a list in tests)."""

    async def notify(self, notice: Notice) -> None: ...


def text(notice: Notice) -> str:
    """The notice as a Discord message (Markdown, nothing in it pings)."""
    if isinstance(notice, FeedPaused):
        return (f"Feed **{escape.plain(notice.name, one_line=True)}** was paused: "
                f"{escape.plain(notice.reason, one_line=True)}\n"
                f"Resume it with `/feed resume` or {resume_command(notice.command_name, notice.feed_id)}.")
    where = f"<#{notice.channel_id}>" if notice.channel_id is not None else escape.code_span(notice.target)
    names = ", ".join(f"**{escape.plain(f.name, one_line=True)}**" for f in notice.feeds) or "its feeds"
    first = notice.feeds[0] if notice.feeds else None
    return (f"Stopped announcing {names} into {where}: {escape.plain(notice.reason, one_line=True)}\n"
            f"Fix the channel or the bot's permissions there, then resume with `/feed resume`"
            + (f" or {resume_command(first.name, first.id)}." if first is not None else "."))


def resume_command(name: str | None, feed_id: int) -> str:
    """``herald feeds resume NAME`` as a code span to copy into a shell: the name quoted for the
    shell, or the feed's id when the code span could not show the name exactly (a backtick, an
    invisible character, a line break in it)."""
    arg = shlex.quote(name) if name and escape.code_span(name) == f"`{name}`" else str(feed_id)
    return escape.code_span(f"herald feeds resume {arg}")
