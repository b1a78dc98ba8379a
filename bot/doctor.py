"""``herald doctor``: checks the config, the storage, every feed and Discord access, and says how
to fix what is wrong. Exit status 0 when everything works, 1 otherwise.

The Discord checks need the bot's token (in the variable ``[discord] token_env`` names): the
login (``GET /users/@me``) and, for every configured channel, the bot's effective permissions
there, computed from the guild's roles, the bot's member and the channel's overwrites the way
Discord does. Without a token they are skipped, with a note on how to enable them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from bot import __version__
from bot.config import Config
from bot.errors import FeedError, FetchError, FetchTimeout, HeraldError, ParseError, UnsafeURL
from bot.escape import clean
from bot.logs import register_secret

FEED_TIMEOUT = 10.0
DISCORD_TIMEOUT = 20.0

# What the README's invite link asks for: View Channels, Send Messages, Send Messages in Threads,
# Embed Links, Create Public Threads.
INVITE_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 38) | (1 << 14) | (1 << 35)
DISCORD_API_BASE = "https://discord.com/api/v10"  # unless [discord] api_base names another server
RATE_LIMIT_RETRIES = 3
HTTP_ERROR = 400
HTTP_FORBIDDEN = 403
HTTP_NOT_FOUND = 404
HTTP_TOO_MANY_REQUESTS = 429

_MARK = {"ok": "ok", "fail": "FAIL", "warn": "warn", "skip": "skip"}


@dataclass
class Finding:
    status: str  # ok, fail, warn, skip
    area: str
    text: str
    fix: str | None = None


@dataclass
class Report:
    out: TextIO
    findings: list[Finding] = field(default_factory=list)

    def add(self, status: str, area: str, text: str, fix: str | None = None) -> None:
        self.findings.append(Finding(status, area, text, fix))
        # feed titles and servers' reasons reach the terminal: no escape sequences, no bidi overrides
        self.out.write(f"[{_MARK[status]:>4}] {area:<8} {clean(text)}\n")
        if fix:
            self.out.write(f"{'':16}{'fix' if status == 'fail' else 'hint'}: {clean(fix)}\n")
        self.out.flush()

    @property
    def failures(self) -> int:
        return sum(1 for f in self.findings if f.status == "fail")


@dataclass
class _Homes:
    """The servers Discord named for channels and webhooks, for finding feeds with none."""

    channels: dict[int, int] = field(default_factory=dict)  # channel id -> guild id
    webhooks: dict[str, int] = field(default_factory=dict)  # webhook variable -> guild id
    discord_checked: bool = False  # the login worked, so every channel was asked about


@dataclass
class _Target:
    """A channel Herald announces into, with what uses it (for the messages)."""

    channel_id: int
    create_thread: bool = False
    used_by: list[str] = field(default_factory=list)
    threaded_by: list[str] = field(default_factory=list)  # those that set create_thread


async def run_doctor(config: Config, *, out: TextIO | None = None) -> int:
    report = Report(out or sys.stdout)
    report.out.write(f"herald {__version__} doctor: {config.path or '(no config file)'}\n\n")
    _check_config(config, report)
    storage = await _check_storage(config, report)
    try:
        stored_feeds, stored_subs = await _stored(storage)
        await _check_feeds(config, stored_feeds, report)
        targets, webhooks = _targets(config, stored_subs)
        homes = _Homes()
        await _check_webhooks(webhooks, report, homes)
        await _check_discord(config, targets, report, homes)
        _check_guilds(config, homes, report)
    finally:
        if storage is not None:
            await storage.close()
    n = report.failures
    if n:
        report.out.write(f"\n{n} problem{'s' if n != 1 else ''} found. Fix {'them' if n != 1 else 'it'} and run "
                         "`herald doctor` again.\n")
    elif any(f.status == "skip" for f in report.findings):
        report.out.write("\nNo problems found, but some checks were skipped (see above).\n")
    else:
        report.out.write("\nNo problems found: everything Herald needs works.\n")
    report.out.flush()
    return 1 if n else 0


# --- config and storage ---------------------------------------------------------------------------


def _check_config(config: Config, report: Report) -> None:
    channels = {c for f in config.feeds for c in f.channels}
    hooks = {w for f in config.feeds for w in f.webhooks}
    report.add("ok", "config", f"{config.path or 'defaults'}: valid; {len(config.feeds)} feed(s), "
               f"{len(channels)} channel(s), {len(hooks)} webhook(s)")
    if not config.feeds:
        report.add("warn", "config", "no [[feeds]] in the config file",
                   "add [[feeds]] tables (see examples/herald.toml), or add feeds in Discord with /feed add")
    if config.http.listen:
        report.add("ok", "config", f"ops server on {config.http.listen} (/healthz, /metrics)")


def _safe_url(url: str) -> str:
    """The storage URL without its password."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


async def _check_storage(config: Config, report: Report) -> Any:
    from bot.storage import open_storage

    url = config.storage_url()
    where = _safe_url(url)
    fix = f"correct [storage] url in {config.path}" if config.path else "set [storage] url"
    try:
        storage = open_storage(url)
        await asyncio.wait_for(storage.open(), 30)
    except asyncio.TimeoutError:
        report.add("fail", "storage", f"{where}: no answer within 30s", "check that the database server is up and "
                   f"reachable from here, then {fix}")
        return None
    except HeraldError as exc:
        text = str(exc)
        hint = fix
        if "does not exist" in text and url.startswith("sqlite:"):
            hint = f"create that folder (and make it writable for the user Herald runs as), or {fix}"
        elif "unable to open" in text or "readonly" in text or "permission" in text.lower():
            hint = "make the database file and its folder writable for the user Herald runs as"
        elif "newer than this Herald" in text:
            hint = "upgrade Herald (pip install -U herald-bot), or point it at another database"
        elif url.startswith(("postgres", "postgresql")):
            hint = f"check the server is up and the URL's user, password, host and database name; {fix}"
        report.add("fail", "storage", text, hint)
        return None
    try:
        await asyncio.wait_for(storage.ping(), 10)
    except Exception as exc:
        report.add("fail", "storage", f"{where}: opened, but it does not answer: {exc}", fix)
        await storage.close()
        return None
    report.add("ok", "storage", f"{where}: opened, schema up to date, answers")
    return storage


async def _stored(storage: Any) -> tuple[list[Any], list[Any]]:
    """Feeds and subscriptions in the database (those added from Discord are not in the config)."""
    if storage is None:
        return [], []
    try:
        return await storage.list_feeds(), await storage.subscriptions()
    except HeraldError:
        return [], []


# --- feeds -------------------------------------------------------------------------------------------


async def _check_feeds(config: Config, stored_feeds: list[Any], report: Report) -> None:
    from bot.fetch import Fetcher
    from bot.parse import parse_feed

    checks: list[tuple[str, str, bool, str]] = []  # label, url, trusted (from the config), where to fix it
    seen: set[str] = set()
    for i, f in enumerate(config.feeds):
        seen.add(f.url)
        checks.append((f.name or f.url, f.url, True, f"feeds[{i}].url in {config.path}"))
    for info in stored_feeds:
        if info.url not in seen:
            seen.add(info.url)
            checks.append((info.name or info.url, info.url, False, "/feed remove and /feed add in Discord"))
    paused = {info.url: info for info in stored_feeds if info.paused}
    p = config.polling

    async with Fetcher(timeout=min(p.timeout, FEED_TIMEOUT), max_bytes=p.max_bytes, concurrency=p.concurrency,
                       per_host=p.per_host, allow_private=p.allow_private) as fetcher:

        async def one(label: str, url: str, trusted: bool) -> tuple[str, Any]:
            try:
                result = await fetcher.fetch(url, guarded=not trusted, allow_file=trusted)
                parsed = await asyncio.to_thread(parse_feed, result.body, result.headers, result.url)
            except (FeedError, UnsafeURL) as exc:
                return "error", exc
            return "ok", parsed

        results = await asyncio.gather(*(one(label, url, trusted) for label, url, trusted, _ in checks))

    for (label, url, _trusted, where), (kind, value) in zip(checks, results, strict=True):
        shown = label if label == url else f"{label} ({url})"
        if kind == "ok":
            title = f' "{value.title}"' if value.title else ""
            note = f"; readable despite: {value.warning}" if value.warning else ""
            report.add("ok", "feed", f"{shown}:{title} {len(value.entries)} entries{note}")
        else:
            report.add("fail", "feed", f"{shown}: {value}", _feed_fix(value, url, where, p.timeout))
        info = paused.get(url)
        if info is not None:
            report.add("warn", "feed", f"{label} is paused: {info.pause_reason or 'no reason recorded'}",
                       f"once it works again: herald feeds resume {label} (or /feed resume in Discord)")


def _feed_fix(exc: Exception, url: str, where: str, timeout: float) -> str:
    if isinstance(exc, FetchTimeout):
        return (f"the server did not answer within {min(timeout, FEED_TIMEOUT):g}s: check the address, DNS, "
                f"firewall or proxy between this machine and {urlsplit(url).hostname or url}")
    if isinstance(exc, UnsafeURL):
        return f"Herald refuses this address; use a public http(s) URL in {where}, or set [polling] allow_private"
    if isinstance(exc, FetchError) and exc.status in (404, 410):
        return f"the feed is not at this URL (any more): correct {where}; `herald preview URL` shows what Herald sees"
    if isinstance(exc, FetchError) and exc.status in (401, 403):
        return "the server refuses Herald (it needs a login or blocks bots); ask the site for an open feed URL"
    if isinstance(exc, FetchError) and exc.status is not None and exc.status >= 500:
        return "the site has a server error; it may pass, Herald retries with backoff"
    if isinstance(exc, ParseError):
        return f"the URL does not serve RSS, Atom or JSON Feed; put the feed's own URL in {where}"
    return f"check {where}; `herald preview URL` fetches it the same way"


# --- Discord ------------------------------------------------------------------------------------------


def _targets(config: Config, subs: list[Any]) -> tuple[dict[int, _Target], dict[str, list[str]]]:
    targets: dict[int, _Target] = {}
    webhooks: dict[str, list[str]] = {}
    for i, f in enumerate(config.feeds):
        label = f"feeds[{i}]" + (f" ({f.name})" if f.name else "")
        for c in f.channels:
            t = targets.setdefault(c, _Target(c))
            t.create_thread = t.create_thread or f.create_thread
            t.used_by.append(label)
            if f.create_thread:
                t.threaded_by.append(label)
        for w in f.webhooks:
            webhooks.setdefault(w, []).append(label)
    for s in subs:
        if getattr(s, "source", "config") == "config":
            continue
        label = f"a feed added from Discord{f' ({s.name})' if getattr(s, 'name', None) else ''}"
        if s.channel_id is not None:
            t = targets.setdefault(s.channel_id, _Target(s.channel_id))
            t.create_thread = t.create_thread or s.create_thread
            t.used_by.append(label)
        elif s.webhook_env:
            webhooks.setdefault(s.webhook_env, []).append(label)
    return targets, webhooks


async def _check_webhooks(webhooks: dict[str, list[str]], report: Report, homes: _Homes | None = None) -> None:
    if not webhooks:
        return
    timeout = aiohttp.ClientTimeout(total=DISCORD_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for env, used_by in webhooks.items():
            url = os.environ.get(env, "").strip()
            users = ", ".join(used_by)
            if not url:
                report.add("fail", "webhook", f"${env} is not set ({users})",
                           f"set {env} to the webhook's URL (channel → Edit Channel → Integrations → Webhooks → "
                           "Copy Webhook URL); it stays out of the config file because it is a secret")
                continue
            register_secret(url)
            try:
                async with session.get(url) as resp:
                    status = resp.status
                    data = await resp.json(content_type=None) if status == 200 else {}
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as exc:
                report.add("fail", "webhook", f"${env}: cannot reach the webhook: {type(exc).__name__}",
                           f"check that ${env} holds a Discord webhook URL and that Discord is reachable from here")
                continue
            if status == 200:
                name = data.get("name") if isinstance(data, dict) else None
                channel = data.get("channel_id") if isinstance(data, dict) else None
                guild = str(data.get("guild_id") or "") if isinstance(data, dict) else ""
                if homes is not None and guild.isdigit():
                    homes.webhooks[env] = int(guild)
                report.add("ok", "webhook", f"${env}: webhook {name!r} in channel {channel}")
            else:
                report.add("fail", "webhook", f"${env}: Discord answered HTTP {status} (the webhook was deleted or "
                           "the URL is wrong)", f"create a new webhook in the channel and put its URL in ${env}")


def _permissions(guild: dict[str, Any], member: dict[str, Any], user_id: int,
                 overwrites: list[dict[str, Any]], *, thread: bool) -> Any:
    """The bot's permissions in a channel: Discord's algorithm (base from roles, then the
    @everyone, role and member overwrites, then the implicit rules), with discord.Permissions."""
    import discord

    guild_id = int(guild["id"])
    if str(guild.get("owner_id")) == str(user_id):
        return discord.Permissions.all()
    roles = {int(r["id"]): int(r.get("permissions", 0)) for r in guild.get("roles", [])}
    member_roles = {int(r) for r in member.get("roles", [])}
    perms = discord.Permissions(roles.get(guild_id, 0))
    for rid in member_roles:
        perms.value |= roles.get(rid, 0)
    if perms.administrator:
        return discord.Permissions.all()
    for ow in overwrites:
        if int(ow["id"]) == guild_id and int(ow.get("type", 0)) == 0:
            perms.handle_overwrite(allow=int(ow["allow"]), deny=int(ow["deny"]))
    allow = deny = 0
    for ow in overwrites:
        if int(ow.get("type", 0)) == 0 and int(ow["id"]) in member_roles and int(ow["id"]) != guild_id:
            allow |= int(ow["allow"])
            deny |= int(ow["deny"])
    perms.handle_overwrite(allow=allow, deny=deny)
    for ow in overwrites:
        if int(ow.get("type", 0)) == 1 and int(ow["id"]) == user_id:
            perms.handle_overwrite(allow=int(ow["allow"]), deny=int(ow["deny"]))
    can_send = perms.send_messages_in_threads if thread else perms.send_messages
    if not can_send:  # without sending, the permissions that qualify a message mean nothing
        perms.send_tts_messages = perms.mention_everyone = perms.embed_links = perms.attach_files = False
    if not perms.view_channel:
        return discord.Permissions.none()
    return perms


def _check_guilds(config: Config, homes: _Homes, report: Report) -> None:
    """Names every config feed whose Discord server cannot be known: the server's /feed list,
    /search and /feed resume would not see it."""
    for i, f in enumerate(config.feeds):
        if f.guild_id is not None:
            continue
        if any(c in homes.channels for c in f.channels) or any(w in homes.webhooks for w in f.webhooks):
            continue
        if f.channels and not homes.discord_checked:
            continue  # its channels were not asked about (no token, or no login); nothing is known either way
        label = f"feeds[{i}]" + (f" ({f.name})" if f.name else "")
        report.add("fail", "server", f"{label}: its Discord server cannot be known (no channel the bot can see, no "
                   "webhook Discord answers for), so /feed list, /search and /feed resume in it will not find this "
                   "feed",
                   "set guild_id = <server id> in that [[feeds]] table (Discord: Developer Mode, then right-click the "
                   "server → Copy Server ID), or fix its channels or webhooks above")


def invite_url(app_id: int | str) -> str:
    return (f"https://discord.com/oauth2/authorize?client_id={app_id}&scope=bot%20applications.commands"
            f"&permissions={INVITE_PERMISSIONS}")


async def _check_discord(config: Config, targets: dict[int, _Target], report: Report,
                         homes: _Homes | None = None) -> None:
    env = config.discord.token_env
    token = config.discord.token()
    if not token:
        report.add("skip", "discord", f"login and channel permissions not checked: ${env} is not set",
                   f"export {env}=<your bot token> and run `herald doctor` again to check them")
        return
    register_secret(token)
    import discord

    base = (config.discord.api_base or DISCORD_API_BASE).rstrip("/")
    timeout = aiohttp.ClientTimeout(total=DISCORD_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = DiscordAPI(session, base, token)
        try:
            me = await api.get("/users/@me")
        except discord.HTTPException as exc:
            if exc.status == 401:
                report.add("fail", "discord", f"Discord rejected the token in ${env} (401 Unauthorized)",
                           f"Discord developer portal → your application → Bot → Reset Token, then set {env} to it")
            else:
                report.add("fail", "discord", f"cannot reach Discord at {base}: {type(exc).__name__}: {exc}",
                           "check this machine's network access to Discord ([discord] api_base when you use another "
                           "server)")
            return
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as exc:
            report.add("fail", "discord", f"cannot reach Discord at {base}: {type(exc).__name__}: {exc}",
                       "check this machine's network access to Discord ([discord] api_base when you use another "
                       "server)")
            return
        user_id = int(me["id"])
        report.add("ok", "discord", f"logged in as {me.get('username', '?')} (id {user_id})")
        try:  # the invite link needs the application's id (the bot user's id on older applications)
            app_id = int((await api.get("/oauth2/applications/@me"))["id"])
        except (discord.HTTPException, aiohttp.ClientError, OSError, asyncio.TimeoutError, KeyError, TypeError,
                ValueError):
            app_id = user_id
        checker = _ChannelChecker(api, user_id, app_id)
        for target in targets.values():
            await checker.check(target, report)
        if homes is not None:
            homes.discord_checked = True
            homes.channels.update(checker.channel_guilds)


class DiscordAPI:
    """The few reads of Discord's REST API the doctor needs, against ``base`` (discord.py's global
    endpoints stay as they are). A 429 is waited out (within DISCORD_TIMEOUT, a few times); an
    error answer raises discord.py's exception for it (NotFound, Forbidden, HTTPException)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        self.session = session
        self.base = base
        self.headers = {"Authorization": f"Bot {token}", "User-Agent": f"Herald/{__version__} (doctor)"}

    async def get(self, path: str) -> Any:
        import discord

        for _ in range(RATE_LIMIT_RETRIES):
            async with self.session.get(self.base + path, headers=self.headers) as resp:
                body = await resp.read()
                try:
                    data: Any = json.loads(body) if body else None
                except ValueError:
                    data = body.decode("utf-8", "replace")
                if resp.status == HTTP_TOO_MANY_REQUESTS:
                    wait = data.get("retry_after", 1.0) if isinstance(data, dict) else 1.0
                    await asyncio.sleep(min(float(wait), DISCORD_TIMEOUT))  # Discord asks for this pause
                    continue
                if resp.status < HTTP_ERROR:
                    return data
                message = data if isinstance(data, (dict, str)) else ""
                if resp.status == HTTP_FORBIDDEN:
                    raise discord.Forbidden(resp, message)
                if resp.status == HTTP_NOT_FOUND:
                    raise discord.NotFound(resp, message)
                raise discord.HTTPException(resp, message)
        raise asyncio.TimeoutError(f"Discord kept answering 429 Too Many Requests to GET {path}")


class _ChannelChecker:
    def __init__(self, api: DiscordAPI, user_id: int, app_id: int) -> None:
        self.api = api
        self.user_id = user_id
        self.app_id = app_id
        self.guilds: dict[int, Any] = {}
        self.members: dict[int, Any] = {}
        self.channels: dict[int, Any] = {}
        self.channel_guilds: dict[int, int] = {}

    async def _channel(self, channel_id: int) -> Any:
        if channel_id not in self.channels:
            self.channels[channel_id] = await self.api.get(f"/channels/{channel_id}")
        return self.channels[channel_id]

    async def check(self, target: _Target, report: Report) -> None:
        import discord

        from bot.permissions import channel_type, check_channel  # discord.py only when Discord is checked

        cid = target.channel_id
        users = ", ".join(target.used_by)
        invite = invite_url(self.app_id)
        try:
            channel = await self._channel(cid)
        except discord.NotFound:
            report.add("fail", "channel", f"channel {cid} does not exist, or the bot is not in its server ({users})",
                       f"correct the channel id, or invite the bot to that server: {invite}")
            return
        except discord.Forbidden:
            report.add("fail", "channel", f"channel {cid}: the bot lacks View Channel there ({users})",
                       "in Discord, channel → Edit Channel → Permissions: allow View Channel for the bot's role")
            return
        except discord.HTTPException as exc:
            report.add("fail", "channel", f"channel {cid}: Discord answered HTTP {exc.status}: {exc.text}", None)
            return
        name = f"#{channel.get('name', cid)} ({cid})"
        ctype = channel_type(channel.get("type"))
        kind = check_channel(ctype, None).kind
        if kind is None:
            report.add("fail", "channel", f"{name} is a {ctype or 'unknown'} channel; Herald posts into text, "
                       f"announcement, forum and thread channels ({users})", "use another channel id")
            return
        guild_id = channel.get("guild_id")
        if guild_id is None:
            report.add("warn", "channel", f"{name}: not in a server; permissions not checked")
            return
        guild_id = int(guild_id)
        self.channel_guilds[cid] = guild_id
        if target.threaded_by and kind not in ("text", "announcement"):
            report.add("warn", "channel", f"{name} is a {kind} channel, but {', '.join(target.threaded_by)} set "
                       "create_thread = true for it, which only text and announcement channels use (a forum already "
                       "gets one post per entry; a thread cannot hold threads)",
                       "remove create_thread from those [[feeds]], or give them a text channel's id")
        try:
            if guild_id not in self.guilds:
                self.guilds[guild_id] = await self.api.get(f"/guilds/{guild_id}")
            if guild_id not in self.members:
                self.members[guild_id] = await self.api.get(f"/guilds/{guild_id}/members/{self.user_id}")
            overwrites_from = channel
            if kind == "thread":  # threads take their parent's overwrites
                overwrites_from = await self._channel(int(channel["parent_id"]))
        except discord.HTTPException as exc:
            report.add("fail", "channel", f"{name}: cannot read its server's roles (HTTP {exc.status})", None)
            return
        guild = self.guilds[guild_id]
        perms = _permissions(guild, self.members[guild_id], self.user_id,
                             overwrites_from.get("permission_overwrites", []), thread=kind == "thread")
        where = f"{name} in {guild.get('name', guild_id)!r}"
        meta = channel.get("thread_metadata") or {}
        missing = check_channel(ctype, perms, create_thread=target.create_thread).missing
        if missing:
            listed = ", ".join(missing)
            report.add("fail", "channel", f"{where}: the bot lacks {listed} ({users})",
                       f"in Discord, {'the parent channel' if kind == 'thread' else name} → Edit Channel → "
                       f"Permissions: allow {listed} for the bot's role (or grant it in Server Settings → Roles)")
        elif meta.get("locked"):
            report.add("fail", "channel", f"{where}: the thread is locked ({users})", "unlock the thread in Discord")
        else:
            report.add("ok", "channel", f"{where}: {kind} channel, the bot can post")
