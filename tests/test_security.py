"""Security: feed text pings nobody and cannot disguise links, notices escape untrusted text,
and secrets (the token, webhook URLs) never reach a log line, a traceback or a stored error."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.identity import normalise_link
from bot.logs import register_secret, setup_logging
from bot.models import StoredEntry, Subscription
from bot.render import render_digest, render_entry
from tests import hostile
from tests.faultkit import record
from tests.discord_harness import fake_discord_toml
from tests.fakediscord import FakeDiscord
from tests.feedgen import numbered_items, write_feed
from tests.hostile import HostileServer
from tests.test_faults import Rig

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:feedparser")

ROOT = Path(__file__).resolve().parent.parent
PINGS = ["@everyone", "@here", "<@123456789012345678>", "<@!123456789012345678>", "<@&234567890123456789>",
         "<#345678901234567890>", "＠everyone", "@\u200beveryone"]


def entry(title: str = "t", summary: str = "s", author: str | None = None, link: str | None = "https://blog.example/a",
          i: int = 1) -> StoredEntry:
    return StoredEntry(id=i, feed_id=1, key=f"id:{i}", title=title, link=link, summary=summary, author=author,
                       published=1_700_000_000.0, image=None, first_seen=1_700_000_000.0)


# --- mentions -----------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(title=st.text(max_size=300), summary=st.text(max_size=600), author=st.one_of(st.none(), st.text(max_size=80)),
       ping=st.sampled_from(PINGS), roles=st.lists(st.integers(1, 2**63), max_size=3, unique=True))
def test_feed_text_never_pings_anyone(title, summary, author, ping, roles):
    sub = Subscription(id=1, feed_id=1, target="channel:1", mention_roles=tuple(roles))
    e = entry(f"{title} {ping}", f"{ping} {summary} {ping}", f"{author} {ping}" if author is not None else ping)
    for payload in (render_entry(e, f"Feed {ping}", sub), render_digest([e, entry(ping, ping, ping, i=2)], ping, sub)):
        expected = {"parse": []}
        if roles:
            expected["roles"] = [str(r) for r in roles]
        assert payload["allowed_mentions"] == expected
        # the only mentions Herald writes itself are the configured roles, in content
        assert payload.get("content", "") == " ".join(f"<@&{r}>" for r in roles)[:2000] or (
            not roles and "content" not in payload)


@pytest.mark.parametrize("ping", PINGS)
def test_each_kind_of_ping_in_every_field_is_inert(ping):
    e = entry(title=f"{ping} title", summary=f"<p>{ping} summary</p>", author=f"{ping} author")
    for payload in (render_entry(e, ping), render_digest([e, entry(ping, ping, ping, i=2)], ping)):
        assert payload["allowed_mentions"] == {"parse": []} and "content" not in payload
    record("@everyone, @here, user, role and channel mentions in feed text", area="security", runs=1, lost=0,
           duplicated=0, outcome="allowed_mentions parse is empty: nobody is pinged")


# --- Markdown and disguised links ----------------------------------------------------------------------

_LINK = re.compile(r"(?<!\\)\[((?:\\.|[^\]\\])*)\]\((<?)([^)\s>]+)>?\)")


def shown_links(markdown: str) -> list[tuple[str, str]]:
    """(text, target) of every masked link Discord would render (unescaped brackets)."""
    return [(m.group(1), m.group(3)) for m in _LINK.finditer(markdown)]


HOSTILE_TITLES = [
    "**bold** __under__ *it* ~~strike~~ ||spoiler|| `code` > quote",
    "# Heading\n- list\n1. one",
    "[https://good.example](https://evil.example)",
    "Look](https://evil.example) [here",
    "\\[escaped\\](https://evil.example)",
    "```\ncode block\n```",
]


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_markdown_in_titles_is_shown_not_rendered(title):
    payload = render_entry(entry(title=title), "Feed")
    shown = payload["embeds"][0]["title"]
    assert shown_links(shown) == []
    for ch in "*_~`|[]":
        assert not re.search(rf"(?<!\\){re.escape(ch)}", shown), (ch, shown)
    # in a digest, titles are link labels: they cannot close the label early or add a link
    digest = render_digest([entry(title=title, link="https://blog.example/real", i=1),
                            entry(title="plain", link="https://blog.example/other", i=2)], "Feed")
    description = digest["embeds"][0]["description"]
    assert {target for _, target in shown_links(description)} <= {"https://blog.example/real", "https://blog.example/other"}
    assert "https://blog.example/real" in description
    record("Markdown and link syntax in titles", area="security", runs=1, lost=0, duplicated=0,
           outcome="escaped in embed titles; digest labels cannot close early or add a link")


DISGUISED = [
    "[https://good.example](https://evil.example)",
    '[https://good.example](https://evil.example "a title")',
    "[https://good.example](<https://evil.example>)",
    "[**https://good.example**](https://evil.example)",
    "[www.good.example](https://evil.example)",
    "[good.example/login](https://evil.example/login)",
    "[[https://good.example]](https://evil.example)",
    "[h\u200bttps://good.example](https://evil.example)",
]


@pytest.mark.parametrize("summary", DISGUISED)
def test_masked_links_in_summaries_cannot_show_one_url_and_open_another(summary):
    description = render_entry(entry(summary=f"Read this: {summary} today."), "Feed")["embeds"][0]["description"]
    for text, target in shown_links(description):
        visible = re.sub(r"[\\*_~`|\[\]<>\u200b-\u200f\u2060\ufeff]", "", text).strip()
        if re.search(r"(?:[a-z]+://|www\.)|^[\w-]+(?:\.[\w-]+)+", visible, re.I):
            assert normalise_link(visible) == normalise_link(target), (text, target, description)
    assert "evil.example" in description  # the real target is shown, not dropped
    record("masked links showing one URL and opening another", area="security", runs=1, lost=0, duplicated=0,
           outcome="rewritten to 'text (<real target>)'")


def test_honest_masked_links_are_kept():
    description = render_entry(entry(summary="See [the release notes](https://blog.example/notes)."),
                               "Feed")["embeds"][0]["description"]
    assert shown_links(description) == [("the release notes", "https://blog.example/notes")]


async def test_pause_notice_escapes_the_feeds_own_title_and_the_servers_reason(tmp_path):
    """A feed added from Discord names itself: its title (and an HTTP reason phrase the server
    chose) end up in the notice, where they must not render as links or formatting."""
    from aiohttp import web

    server = HostileServer()
    await server.start()
    rig = await Rig.start(tmp_path, server, guarded_victim=True)
    try:
        server.serve("/victim.xml", hostile.feed([0, 1], title="[https://good.example](https://evil.example) **x**"))
        await rig.cycle(publish_control=False)

        async def gone(request: web.Request) -> web.Response:
            return web.Response(status=410, reason="Gone [click](https://evil.example)")

        server.set_handler("/victim.xml", gone)
        await rig.until_victim_polled()
        [(_, _, text)] = rig.alerts
    finally:
        await rig.close()
        await server.close()
    assert shown_links(text) == []
    assert "\\*\\*x\\*\\*" in text


# --- secrets -----------------------------------------------------------------------------------------


def test_secrets_are_redacted_from_tracebacks_and_aiohttp_errors():
    token = "sekrit-token-ABCDEF-0123456789-xyz"
    hook = "http://127.0.0.1:1/api/v10/webhooks/123456789012345678/" + "T" * 68
    register_secret(token)
    register_secret(hook)
    for fmt in ("text", "json"):
        out = io.StringIO()
        setup_logging("DEBUG", fmt, stream=out)
        log = logging.getLogger("herald.test-secrets")
        try:
            try:
                raise aiohttp.InvalidURL(hook + "?wait=true")
            except aiohttp.ClientError as exc:
                raise RuntimeError(f"sending with token {token} failed") from exc
        except RuntimeError:
            log.exception("delivery to %s failed, Authorization: Bot %s", hook, token)
        info = aiohttp.RequestInfo(url=__import__("yarl").URL(hook), method="POST", headers={}, real_url=__import__("yarl").URL(hook))
        log.error("error: %s", aiohttp.ClientResponseError(info, (), status=404, message="Unknown Webhook"))
        text = out.getvalue()
        assert "Traceback" in text and "InvalidURL" in text and "[REDACTED]" in text
        assert token not in text and "T" * 68 not in text, text
    setup_logging("INFO", "text")


def _secrets_of(urls: dict[str, str], token: str) -> list[str]:
    out = [token]
    for url in urls.values():
        out.append(url)
        out.append(url.rstrip("/").rsplit("/", 1)[-1])  # the webhook token on its own
    return out


class _Lines:
    """Reads a process's stderr on a thread; waits for a line matching a pattern."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 30.0) -> bool:
        rx = re.compile(pattern)
        with self._cond:
            return self._cond.wait_for(lambda: any(rx.search(x) for x in self.lines), timeout)

    def text(self) -> str:
        self._thread.join(10)
        return "".join(self.lines)


async def test_a_run_with_failing_webhooks_never_logs_a_secret(tmp_path):
    token = "sekrit-token-ABCDEF-0123456789-xyz"
    async with FakeDiscord(token=token, message_rate=(50, 1.0)) as fake:
        guild = fake.add_guild()
        channel = fake.add_channel(guild, "news")
        gone_url = fake.add_webhook(channel)
        fake.webhooks.pop(int(gone_url.rsplit("/", 2)[-2]))  # deleted in Discord: 404 Unknown Webhook
        flaky_url = fake.add_webhook(channel)
        flaky_id = flaky_url.rsplit("/", 2)[-2]
        fake.fail_next(3, status=500, route=lambda method, path: path.startswith(f"/webhooks/{flaky_id}"))
        hooks = {
            "HOOK_GONE": gone_url,
            "HOOK_FLAKY": flaky_url,
            "HOOK_DOWN": "http://127.0.0.1:1/api/v10/webhooks/223456789012345678/" + "D" * 68,
            "HOOK_BAD": "http://[::1/api/v10/webhooks/323456789012345678/" + "B" * 68,
        }
        url = write_feed(tmp_path / "f.xml", numbered_items(2))
        cfg = tmp_path / "h.toml"
        cfg.write_text(fake_discord_toml(fake, tmp_path / 'h.db', token_env="HERALD_SECRET_TOKEN") + f"""[polling]
interval = "1h"
[[feeds]]
url = "{url}"
name = "f"
channels = [{channel}]
webhooks = ["HOOK_GONE", "HOOK_FLAKY", "HOOK_DOWN", "HOOK_BAD"]
backfill = 2
""")
        env = dict(os.environ, HERALD_SECRET_TOKEN=token, **hooks)
        p = subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(cfg), "--log-level", "debug"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = _Lines(p.stderr)
        try:
            await fake.wait_for_messages(channel, 4, timeout=60)  # 2 by the bot, 2 through the flaky webhook
            for pattern in (r"HOOK_GONE.*(refused|404)", r"webhook network error", r"HOOK_BAD"):
                assert await asyncio.to_thread(lines.wait_for, pattern, 30), pattern
        finally:
            p.send_signal(signal.SIGTERM)
            out, _ = await asyncio.to_thread(p.communicate, timeout=30)
        err = lines.text()
    assert p.returncode == 0, err[-3000:]
    stored = _stored_text(tmp_path / "h.db")
    secrets = _secrets_of(hooks, token)
    for where, text in (("stderr", err), ("stdout", out), ("database", stored)):
        for s in secrets:
            assert s not in text, f"a secret reached {where}"
    assert "HOOK_BAD" in stored and "not a valid" in stored  # the misconfigured webhook is paused with its reason
    record("secrets in logs (token, 4 failing webhooks, debug level)", area="security", runs=1, lost=0, duplicated=0,
           outcome=f"{len(err.splitlines())} log lines and every stored error checked: no token or webhook URL")


def _stored_text(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT error FROM deliveries UNION ALL SELECT pause_reason FROM subscriptions"
                           " UNION ALL SELECT last_error FROM feeds").fetchall()
    finally:
        con.close()
    return "\n".join(r[0] for r in rows if r[0])
