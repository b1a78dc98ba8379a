"""FakeDiscord: an aiohttp server on 127.0.0.1 speaking Discord's REST API and gateway.

The real discord.py client logs in to it (see ``point_discord_py_at``). It keeps
Discord's state (guilds, roles, channels, threads, messages, webhooks, commands,
interactions), enforces Discord's limits, permissions and rate limits, and records
everything so tests can assert on it without sleeping.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import hashlib
import json
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Tuple, Union

import aiohttp
from aiohttp import web

from . import limits as L
from . import permissions as P
from .records import InteractionRecord, RecordedRequest
from .validation import (
    ApiError,
    FormErrors,
    check_message_fields,
    check_thread_name,
    discord_error,
    empty_message,
    invalid_form_body,
    is_empty,
    resolve_mentions,
    validate_new_message,
)

DISCORD_EPOCH_MS = 1420070400000

# Gateway intents (only those the fake looks at).
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT
ALL_INTENTS = (1 << 26) - 1  # every bit Discord currently defines fits below this

_EVENT_INTENTS = {
    "GUILD_CREATE": INTENT_GUILDS,
    "GUILD_UPDATE": INTENT_GUILDS,
    "GUILD_DELETE": INTENT_GUILDS,
    "GUILD_ROLE_CREATE": INTENT_GUILDS,
    "GUILD_ROLE_UPDATE": INTENT_GUILDS,
    "GUILD_ROLE_DELETE": INTENT_GUILDS,
    "CHANNEL_CREATE": INTENT_GUILDS,
    "CHANNEL_UPDATE": INTENT_GUILDS,
    "CHANNEL_DELETE": INTENT_GUILDS,
    "THREAD_CREATE": INTENT_GUILDS,
    "THREAD_UPDATE": INTENT_GUILDS,
    "THREAD_DELETE": INTENT_GUILDS,
    "GUILD_MEMBER_UPDATE": INTENT_GUILDS,  # only ever sent for the bot itself here
    "MESSAGE_CREATE": INTENT_GUILD_MESSAGES,
    "MESSAGE_UPDATE": INTENT_GUILD_MESSAGES,
    "MESSAGE_DELETE": INTENT_GUILD_MESSAGES,
}

TEXT_TYPES = (0, 5)  # text, announcement
THREAD_TYPES = (10, 11, 12)
FORUM_TYPES = (15, 16)
MESSAGEABLE_TYPES = TEXT_TYPES + THREAD_TYPES

MSG_FLAG_CROSSPOSTED = 1 << 0
MSG_FLAG_SUPPRESS_EMBEDS = 1 << 2
MSG_FLAG_HAS_THREAD = 1 << 5
MSG_FLAG_EPHEMERAL = 1 << 6
MSG_FLAG_LOADING = 1 << 7
MSG_FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
MSG_FLAG_IS_VOICE_MESSAGE = 1 << 13
MSG_FLAG_COMPONENTS_V2 = 1 << 15
_SETTABLE_FLAGS = MSG_FLAG_SUPPRESS_EMBEDS | MSG_FLAG_SUPPRESS_NOTIFICATIONS | MSG_FLAG_IS_VOICE_MESSAGE | MSG_FLAG_COMPONENTS_V2

# Which callback types each interaction type accepts.
_ALLOWED_CALLBACKS = {
    1: {1},
    2: {4, 5, 9, 12},
    3: {4, 5, 6, 7, 9, 12},
    4: {8},
    5: {4, 5, 6, 7},
}

# Option types of application commands.
OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP = 1, 2
OPT_STRING, OPT_INTEGER, OPT_BOOLEAN, OPT_USER, OPT_CHANNEL, OPT_ROLE, OPT_MENTIONABLE, OPT_NUMBER, OPT_ATTACHMENT = (
    3, 4, 5, 6, 7, 8, 9, 10, 11,
)

Handler = Callable[["_Req"], Awaitable[Any]]
RouteSpec = Union[None, str, Callable[[str, str], bool]]
PermSpec = Union[int, str, Iterable[str], None]


def _iso(ts: Optional[float] = None) -> str:
    ts = time.time() if ts is None else ts
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat()


def _sid(value: Optional[int]) -> Optional[str]:
    return None if value is None else str(value)


def _json_response(status: int, payload: Any, headers: Optional[Dict[str, str]] = None) -> web.Response:
    # discord.py compares Content-Type literally with 'application/json', so no charset suffix.
    h = {"Content-Type": "application/json", "Via": "1.1 google"}
    if headers:
        h.update(headers)
    return web.Response(status=status, body=json.dumps(payload).encode(), headers=h)


def _parse_bool(value: Optional[str]) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _template_regex(template: str) -> "re.Pattern[str]":
    out = ""
    for part in re.split(r"(\{[a-z_]+\})", template):
        if part.startswith("{") and part.endswith("}"):
            out += f"(?P<{part[1:-1]}>[^/]+)"
        else:
            out += re.escape(part)
    return re.compile(out)


def _route_matcher(route: RouteSpec) -> Callable[[str, Optional[str], str], bool]:
    """route spec -> predicate(method, template, path)."""
    if route is None:
        return lambda method, template, path: True
    if callable(route):
        return lambda method, template, path: bool(route(method, path))
    spec = route.strip()
    want_method = None
    if " " in spec:
        want_method, spec = spec.split(None, 1)
        want_method = want_method.upper()
    rx = _template_regex(spec)

    def match(method: str, template: Optional[str], path: str) -> bool:
        if want_method and method != want_method:
            return False
        return template == spec or rx.fullmatch(path) is not None

    return match


@dataclass
class _Route:
    method: str
    template: str
    handler: Handler
    auth: bool = True  # needs "Authorization: Bot <token>"
    bucket: Optional[str] = "route"  # "message", "route" or None (not rate limited)
    regex: "re.Pattern[str]" = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.regex = _template_regex(self.template)
        self.bucket_hash = hashlib.sha1(f"{self.method} {self.template}".encode()).hexdigest()[:32]


@dataclass
class _Req:
    method: str
    path: str
    params: Dict[str, str]
    query: Dict[str, str]
    json: Any
    files: List[Dict[str, Any]]
    headers: Dict[str, str]


@dataclass
class _Fault:
    remaining: int
    matcher: Callable[[str, Optional[str], str], bool]
    status: int
    retry_after: float = 0.0
    global_: bool = False


@dataclass
class _Bucket:
    limit: int
    period: float
    reset_at: float
    count: int = 0


@dataclass
class _Msg:
    wire: Dict[str, Any]
    meta: Dict[str, Any]
    created: float
    ephemeral: bool = False
    deleted: bool = False

    @property
    def id(self) -> int:
        return int(self.wire["id"])

    @property
    def channel_id(self) -> int:
        return int(self.wire["channel_id"])


@dataclass
class _Session:
    id: str
    intents: int
    shard: Optional[List[int]]
    seq: int = 0
    log: List[Dict[str, Any]] = field(default_factory=list)
    ws: Optional[web.WebSocketResponse] = None
    invalid: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _GatewayPause:
    def __init__(self, fake: "FakeDiscord") -> None:
        self.fake = fake

    async def __aenter__(self) -> None:
        self.fake._gateway_gate = asyncio.Event()

    async def __aexit__(self, *exc: Any) -> None:
        gate, self.fake._gateway_gate = self.fake._gateway_gate, None
        if gate is not None:
            gate.set()


class FakeDiscord:
    """A faithful-enough Discord for tests. See README.md in this folder."""

    def __init__(
        self,
        token: str = "fake-bot-token.Herald.Tests",
        *,
        app_id: Optional[int] = None,
        bot_user_id: Optional[int] = None,
        bot_name: str = "Herald",
        message_rate: Tuple[int, float] = L.DEFAULT_MESSAGE_RATE,
        route_rate: Tuple[int, float] = L.DEFAULT_ROUTE_RATE,
        global_rate: int = L.DEFAULT_GLOBAL_RATE,
        latency: float = 0.0,
        heartbeat_interval_ms: int = L.DEFAULT_HEARTBEAT_INTERVAL_MS,
        privileged_intents: int = 0,
        interaction_response_deadline: float = L.INTERACTION_RESPONSE_DEADLINE,
        interaction_token_lifetime: float = L.INTERACTION_TOKEN_LIFETIME,
        host: str = "127.0.0.1",
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("FakeDiscord only listens on loopback")
        self.token = token
        self.host = host
        self.message_rate = message_rate
        self.route_rate = route_rate
        self.global_rate = global_rate
        self.latency = latency
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents = privileged_intents
        self.interaction_response_deadline = interaction_response_deadline
        self.interaction_token_lifetime = interaction_token_lifetime

        self._last_id = 0
        self.app_id: int = app_id or self._snowflake()
        self.bot_user_id: int = bot_user_id or self._snowflake()
        self._token_valid = True

        self.users: Dict[int, Dict[str, Any]] = {}
        self.bot_user = self._make_user(self.bot_user_id, bot_name, bot=True)
        self.bot_user.update({"verified": True, "mfa_enabled": False, "locale": "en-US", "email": None})
        self._app_owner = self.add_user(None, "appowner")
        self._current_invoker: Optional[int] = None
        self.guilds: Dict[int, Dict[str, Any]] = {}
        self.channels: Dict[int, Dict[str, Any]] = {}
        self.webhooks: Dict[int, Dict[str, Any]] = {}
        self._messages: Dict[int, List[_Msg]] = {}
        self._message_index: Dict[int, _Msg] = {}
        self._nonces: Dict[Tuple[int, int, str], Tuple[int, float]] = {}
        self._commands: Dict[Optional[int], List[Dict[str, Any]]] = {}
        self.command_syncs: List[Dict[str, Any]] = []  # {"guild_id", "body", "time"} per PUT
        self.interactions: Dict[int, InteractionRecord] = {}
        self._interactions_by_token: Dict[str, InteractionRecord] = {}

        self.requests: List[RecordedRequest] = []
        self.unknown_routes: List[RecordedRequest] = []
        self.gateway_received: List[Dict[str, Any]] = []  # every payload the client sent (tokens redacted)
        self.gateway_connections: List[Dict[str, Any]] = []  # {"path", "query", "time"} per websocket
        self.identifies: List[Dict[str, Any]] = []  # IDENTIFY "d" payloads, token redacted
        self.resumes: List[Dict[str, Any]] = []  # RESUME "d" payloads, token redacted
        self.gateway_closes: List[Dict[str, Any]] = []  # {"code", "by"} for every closed websocket

        self.internal_errors: List[BaseException] = []  # bugs inside the fake (answered as 500)
        self.replayed: List[Dict[str, Any]] = []  # frames re-sent on RESUME
        self._closing = False
        self._gateway_gate: Optional[asyncio.Event] = None
        self._faults: List[_Fault] = []
        self._buckets: Dict[Tuple[str, str], _Bucket] = {}
        self._global_window: Tuple[float, int] = (0.0, 0)
        self._sessions: Dict[str, _Session] = {}
        self._open_ws: Dict[web.WebSocketResponse, Dict[str, Any]] = {}
        self._change = asyncio.Event()
        self._events: Optional["asyncio.Queue[Any]"] = None
        self._dispatcher: Optional["asyncio.Task[None]"] = None
        self._runner: Optional[web.AppRunner] = None
        self.port: Optional[int] = None
        self._routes: List[_Route] = []
        self._register_routes()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> "FakeDiscord":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("GET", "/gateway", self._gateway_handler)
        app.router.add_route("GET", "/gateway/resume", self._gateway_handler)
        app.router.add_route("*", "/{tail:.*}", self._http_handler)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._events = asyncio.Queue()
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="fakediscord-dispatcher")
        return self

    async def close(self) -> None:
        self._closing = True  # refuse new websockets so a still-running client cannot keep us alive
        if self._gateway_gate is not None:
            self._gateway_gate.set()
        for ws in list(self._open_ws):
            self._open_ws[ws]["closed_by_server"] = True
            try:
                await asyncio.wait_for(ws.close(code=1001, message=b"fake shutting down"), 2.0)
            except Exception:
                pass
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            try:
                await self._dispatcher
            except BaseException:
                pass
            self._dispatcher = None
        self._events = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeDiscord":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeDiscord not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v{L.API_VERSION}"

    @property
    def gateway_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/gateway"

    @property
    def resume_gateway_url(self) -> str:
        return self.gateway_url + "/resume"

    # ------------------------------------------------------------------ ids & helpers
    def _snowflake(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        value = (ms << 22) | (1 << 17) | (1 << 12)
        value = max(value, self._last_id + 1)
        self._last_id = value
        return value

    def _notify(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    def _make_user(self, user_id: int, username: str, *, bot: bool = False) -> Dict[str, Any]:
        user = {
            "id": str(user_id),
            "username": username,
            "discriminator": "0",
            "global_name": None if bot else username.title(),
            "avatar": None,
            "bot": bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "primary_guild": None,
            "collectibles": None,
        }
        self.users[user_id] = user
        return user

    def _user(self, user_id: int) -> Dict[str, Any]:
        return {k: v for k, v in self.users[user_id].items() if k not in ("email",)}

    # ------------------------------------------------------------------ state setup (sync)
    def add_user(self, user_id: Optional[int] = None, username: Optional[str] = None, *, bot: bool = False) -> int:
        user_id = user_id or self._snowflake()
        if user_id not in self.users:
            self._make_user(user_id, username or f"user{str(user_id)[-4:]}", bot=bot)
        return user_id

    def add_guild(
        self,
        guild_id: Optional[int] = None,
        name: str = "Herald Test Guild",
        owner_id: Optional[int] = None,
        *,
        bot_permissions: PermSpec = P.BOT_DEFAULT,
        everyone_permissions: PermSpec = P.EVERYONE_DEFAULT,
    ) -> int:
        """Create a guild the bot is a member of (with @everyone and the bot's managed role)."""
        guild_id = guild_id or self._snowflake()
        owner_id = self.add_user(owner_id, "owner")
        bot_role_id = self._snowflake()
        guild = {
            "id": guild_id,
            "name": name,
            "owner_id": owner_id,
            "roles": {},
            "members": {},
            "bot_role_id": bot_role_id,
            "joined_at": _iso(),
        }
        guild["roles"][guild_id] = self._role_state(guild_id, "@everyone", P.to_bits(everyone_permissions), 0)
        role = self._role_state(bot_role_id, self.bot_user["username"], P.to_bits(bot_permissions), 1)
        role["managed"] = True
        role["tags"] = {"bot_id": str(self.bot_user_id)}
        guild["roles"][bot_role_id] = role
        guild["members"][owner_id] = {"roles": [], "joined_at": _iso()}
        guild["members"][self.bot_user_id] = {"roles": [bot_role_id], "joined_at": _iso()}
        self.guilds[guild_id] = guild
        self._emit("GUILD_CREATE", lambda: self._guild_create_payload(guild_id))
        return guild_id

    def set_system_channel(self, guild_id: int, channel_id: Optional[int]) -> None:
        """Server Settings → System Messages Channel (None: no system channel). Dispatches GUILD_UPDATE."""
        if channel_id is not None and self.channels[channel_id]["guild_id"] != guild_id:
            raise ValueError("the system channel must be a channel of the same guild")
        self.guilds[guild_id]["system_channel_id"] = channel_id
        self._emit("GUILD_UPDATE", lambda: self._guild_rest_wire(guild_id))

    def remove_guild(self, guild_id: int) -> None:
        """The bot is removed from the guild (GUILD_DELETE, channels disappear)."""
        self.guilds.pop(guild_id)
        for cid in [c for c, ch in self.channels.items() if ch["guild_id"] == guild_id]:
            self.channels.pop(cid)
        self._emit("GUILD_DELETE", {"id": str(guild_id), "unavailable": False})

    @staticmethod
    def _role_state(role_id: int, name: str, perms: int, position: int) -> Dict[str, Any]:
        return {
            "id": role_id,
            "name": name,
            "permissions": perms,
            "position": position,
            "managed": False,
            "tags": None,
            "color": 0,
        }

    def _role_wire(self, role: Dict[str, Any]) -> Dict[str, Any]:
        wire = {
            "id": str(role["id"]),
            "name": role["name"],
            "color": role["color"],
            "colors": {"primary_color": role["color"], "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": role["position"],
            "permissions": str(role["permissions"]),
            "managed": role["managed"],
            "mentionable": False,
            "flags": 0,
        }
        if role.get("tags"):
            wire["tags"] = role["tags"]
        return wire

    def add_role(
        self,
        guild_id: int,
        name: str,
        permissions: PermSpec = 0,
        *,
        role_id: Optional[int] = None,
        assign_to_bot: bool = False,
        members: Iterable[int] = (),
    ) -> int:
        guild = self.guilds[guild_id]
        role_id = role_id or self._snowflake()
        position = max(r["position"] for r in guild["roles"].values()) + 1
        guild["roles"][role_id] = self._role_state(role_id, name, P.to_bits(permissions), position)
        self._emit(
            "GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role": self._role_wire(guild["roles"][role_id])}
        )
        for uid in members:
            self.add_member(guild_id, uid)
            guild["members"][uid]["roles"].append(role_id)
        if assign_to_bot:
            guild["members"][self.bot_user_id]["roles"].append(role_id)
            self._emit(
                "GUILD_MEMBER_UPDATE",
                lambda: dict(self._member_wire(guild_id, self.bot_user_id), guild_id=str(guild_id)),
            )
        return role_id

    def set_role_permissions(self, guild_id: int, role_id: int, permissions: PermSpec) -> None:
        """Change a role's guild permissions (role_id=guild_id for @everyone). Dispatches GUILD_ROLE_UPDATE."""
        role = self.guilds[guild_id]["roles"][role_id]
        role["permissions"] = P.to_bits(permissions)
        self._emit("GUILD_ROLE_UPDATE", {"guild_id": str(guild_id), "role": self._role_wire(role)})

    def bot_role_id(self, guild_id: int) -> int:
        return self.guilds[guild_id]["bot_role_id"]

    def add_member(
        self, guild_id: int, user_id: Optional[int] = None, username: Optional[str] = None, roles: Iterable[int] = ()
    ) -> int:
        user_id = self.add_user(user_id, username)
        members = self.guilds[guild_id]["members"]
        if user_id not in members:
            members[user_id] = {"roles": list(roles), "joined_at": _iso()}
        return user_id

    def _member_wire(self, guild_id: int, user_id: int, *, with_permissions: Optional[int] = None) -> Dict[str, Any]:
        member = self.guilds[guild_id]["members"][user_id]
        wire = {
            "user": self._user(user_id),
            "nick": None,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in member["roles"]],
            "joined_at": member["joined_at"],
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_permissions is not None:
            wire["permissions"] = str(with_permissions)
        return wire

    def add_channel(
        self,
        guild_id: int,
        name: str,
        type: int = 0,
        channel_id: Optional[int] = None,
        parent_id: Optional[int] = None,
        perms: PermSpec = None,
        *,
        overwrites: Optional[List[Dict[str, Any]]] = None,
        topic: Optional[str] = None,
    ) -> int:
        """Create a channel. type: 0 text, 5 announcement, 15 forum, 4 category, 11/10/12 threads.

        ``perms`` (bitfield or names) makes those the bot's exact permissions in the channel by
        adding a member overwrite for the bot; None keeps what its roles give it.
        Threads need ``parent_id`` and inherit their parent's permissions.
        """
        if guild_id not in self.guilds:
            raise KeyError(f"unknown guild {guild_id}")
        channel_id = channel_id or self._snowflake()
        if type in THREAD_TYPES:
            if parent_id is None or parent_id not in self.channels:
                raise ValueError("threads need an existing parent_id")
            if perms is not None or overwrites:
                raise ValueError("threads inherit permissions from their parent; set them on the parent")
            self.channels[channel_id] = self._new_thread_state(
                channel_id, self.channels[parent_id], name, type, owner_id=self.guilds[guild_id]["owner_id"]
            )
            self._emit("THREAD_CREATE", lambda: dict(self._channel_wire(channel_id), newly_created=True))
            return channel_id
        position = sum(1 for c in self.channels.values() if c["guild_id"] == guild_id and c["type"] not in THREAD_TYPES)
        ch = {
            "id": channel_id,
            "guild_id": guild_id,
            "type": type,
            "name": name,
            "position": position,
            "parent_id": parent_id,
            "overwrites": [dict(o) for o in (overwrites or [])],
            "topic": topic,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        self.channels[channel_id] = ch
        self._messages[channel_id] = []
        if perms is not None:
            self._set_member_overwrite(ch, self.bot_user_id, P.to_bits(perms))
        self._emit("CHANNEL_CREATE", lambda: self._channel_wire(channel_id))
        return channel_id

    def _new_thread_state(
        self, thread_id: int, parent: Dict[str, Any], name: str, type: int, *, owner_id: int
    ) -> Dict[str, Any]:
        self._messages.setdefault(thread_id, [])
        return {
            "id": thread_id,
            "guild_id": parent["guild_id"],
            "type": type,
            "name": name,
            "parent_id": parent["id"],
            "owner_id": owner_id,
            "last_message_id": None,
            "message_count": 0,
            "total_message_sent": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "flags": 0,
            "applied_tags": [],
            "archived": False,
            "locked": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": _iso(),
            "create_timestamp": _iso(),
            "created": time.time(),
        }

    def _set_member_overwrite(self, ch: Dict[str, Any], user_id: int, bits: int) -> None:
        ch["overwrites"] = [o for o in ch["overwrites"] if not (o["type"] == 1 and int(o["id"]) == user_id)]
        ch["overwrites"].append(
            {"id": user_id, "type": 1, "allow": bits & P.ALL_CHANNEL, "deny": P.ALL_CHANNEL & ~bits}
        )

    def set_bot_permissions(self, channel_id: int, perms: PermSpec) -> None:
        """Make ``perms`` the bot's exact permissions in a (non-thread) channel; dispatches CHANNEL_UPDATE."""
        ch = self.channels[channel_id]
        if ch["type"] in THREAD_TYPES:
            raise ValueError("threads inherit permissions from their parent; set them on the parent")
        self._set_member_overwrite(ch, self.bot_user_id, P.to_bits(perms))
        self._emit("CHANNEL_UPDATE", lambda: self._channel_wire(channel_id))

    def delete_channel(self, channel_id: int) -> None:
        """Delete a channel (and its threads and webhooks); dispatches CHANNEL_DELETE / THREAD_DELETE."""
        ch = self.channels.pop(channel_id)
        if ch["type"] in THREAD_TYPES:
            self._emit(
                "THREAD_DELETE",
                {"id": str(channel_id), "guild_id": str(ch["guild_id"]), "parent_id": str(ch["parent_id"]), "type": ch["type"]},
            )
            return
        wire = self._channel_wire_from(ch)
        for wid in [w for w, hook in self.webhooks.items() if hook["channel_id"] == channel_id]:
            self.webhooks.pop(wid)
        for tid in [t for t, c in self.channels.items() if c.get("parent_id") == channel_id and c["type"] in THREAD_TYPES]:
            self.channels.pop(tid)
        self._emit("CHANNEL_DELETE", wire)

    def archive_thread(self, thread_id: int, *, archived: bool = True, locked: bool = False) -> None:
        th = self.channels[thread_id]
        th["archived"], th["locked"] = archived, locked
        th["archive_timestamp"] = _iso()
        self._emit("THREAD_UPDATE", lambda: self._channel_wire(thread_id))

    def add_webhook(self, channel_id: int, name: str = "Herald Feeds", *, webhook_id: Optional[int] = None) -> str:
        """Create an incoming webhook on a channel; returns its full execute URL on this fake."""
        hook = self._new_webhook(self.channels[channel_id], name, webhook_id=webhook_id)
        return hook["url"]

    def _new_webhook(self, ch: Dict[str, Any], name: str, *, webhook_id: Optional[int] = None, avatar: Optional[str] = None) -> Dict[str, Any]:
        wid = webhook_id or self._snowflake()
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        token = "".join(secrets.choice(alphabet) for _ in range(L.WEBHOOK_TOKEN_LENGTH))
        hook = {
            "id": wid,
            "token": token,
            "channel_id": ch["id"],
            "guild_id": ch["guild_id"],
            "name": name,
            "avatar": avatar,
            "url": f"{self.api_base}/webhooks/{wid}/{token}",
        }
        self.webhooks[wid] = hook
        return hook

    def _webhook_wire(self, hook: Dict[str, Any], *, with_token: bool = True) -> Dict[str, Any]:
        wire = {
            "id": str(hook["id"]),
            "type": 1,
            "guild_id": str(hook["guild_id"]),
            "channel_id": str(hook["channel_id"]),
            "name": hook["name"],
            "avatar": hook["avatar"],
            "application_id": None,
            "user": self._user(self.bot_user_id),
        }
        if with_token:
            wire["token"] = hook["token"]
            wire["url"] = hook["url"]
        return wire

    def set_token_valid(self, valid: bool) -> None:
        """False: every bot-token check fails (REST 401, gateway IDENTIFY/RESUME closes with 4004)."""
        self._token_valid = valid

    # ------------------------------------------------------------------ permissions
    def _guild_base(self, guild: Dict[str, Any], user_id: int) -> int:
        member = guild["members"].get(user_id, {"roles": []})
        roles = guild["roles"]
        return P.compute_base(
            roles[guild["id"]]["permissions"],
            [roles[r]["permissions"] for r in member["roles"] if r in roles],
            is_owner=guild["owner_id"] == user_id,
        )

    def permissions_for(self, channel_id: int, user_id: Optional[int] = None) -> int:
        """Effective permissions of a member (default: the bot) in a channel or thread."""
        user_id = self.bot_user_id if user_id is None else user_id
        ch = self.channels[channel_id]
        is_thread = ch["type"] in THREAD_TYPES
        base_ch = self.channels[ch["parent_id"]] if is_thread else ch
        guild = self.guilds[ch["guild_id"]]
        member = guild["members"].get(user_id, {"roles": []})
        perms = P.compute_overwrites(
            self._guild_base(guild, user_id),
            base_ch["overwrites"],
            guild_id=guild["id"],
            member_id=user_id,
            member_role_ids=member["roles"],
        )
        return P.apply_implicit(perms, thread=is_thread)

    def bot_permissions(self, channel_id: int) -> set:
        return P.names(self.permissions_for(channel_id))

    def _need(self, ch: Dict[str, Any], bits: int, *, access: bool = False) -> None:
        perms = self.permissions_for(ch["id"])
        if not perms & P.VIEW_CHANNEL:  # type: ignore[attr-defined]
            raise ApiError(403, discord_error(50001, "Missing Access"))
        if access:
            return
        if perms & bits != bits:
            raise ApiError(403, discord_error(50013, "Missing Permissions"))

    # ------------------------------------------------------------------ wire shapes
    def _overwrite_wire(self, o: Dict[str, Any]) -> Dict[str, Any]:
        return {"id": str(o["id"]), "type": o["type"], "allow": str(o["allow"]), "deny": str(o["deny"])}

    def _channel_wire(self, channel_id: int) -> Dict[str, Any]:
        return self._channel_wire_from(self.channels[channel_id])

    def _channel_wire_from(self, ch: Dict[str, Any]) -> Dict[str, Any]:
        if ch["type"] in THREAD_TYPES:
            return {
                "id": str(ch["id"]),
                "guild_id": str(ch["guild_id"]),
                "parent_id": str(ch["parent_id"]),
                "owner_id": str(ch["owner_id"]),
                "type": ch["type"],
                "name": ch["name"],
                "last_message_id": _sid(ch["last_message_id"]),
                "message_count": ch["message_count"],
                "total_message_sent": ch["total_message_sent"],
                "member_count": ch["member_count"],
                "rate_limit_per_user": ch["rate_limit_per_user"],
                "flags": ch["flags"],
                "applied_tags": [str(t) for t in ch["applied_tags"]],
                "thread_metadata": {
                    "archived": ch["archived"],
                    "auto_archive_duration": ch["auto_archive_duration"],
                    "archive_timestamp": ch["archive_timestamp"],
                    "locked": ch["locked"],
                    "create_timestamp": ch["create_timestamp"],
                    **({"invitable": True} if ch["type"] == 12 else {}),
                },
            }
        wire = {
            "id": str(ch["id"]),
            "type": ch["type"],
            "guild_id": str(ch["guild_id"]),
            "name": ch["name"],
            "position": ch["position"],
            "parent_id": _sid(ch["parent_id"]),
            "permission_overwrites": [self._overwrite_wire(o) for o in ch["overwrites"]],
            "nsfw": ch["nsfw"],
            "flags": ch["flags"],
        }
        if ch["type"] != 4:
            wire.update(
                topic=ch["topic"],
                last_message_id=_sid(ch["last_message_id"]),
                rate_limit_per_user=ch["rate_limit_per_user"],
                default_auto_archive_duration=1440,
                default_thread_rate_limit_per_user=0,
            )
        if ch["type"] in FORUM_TYPES:
            wire.update(
                available_tags=[],
                default_reaction_emoji=None,
                default_sort_order=None,
                default_forum_layout=0,
            )
        return wire

    def _guild_create_payload(self, guild_id: int) -> Dict[str, Any]:
        g = self.guilds[guild_id]
        chans = [c for c in self.channels.values() if c["guild_id"] == guild_id]
        return {
            "id": str(guild_id),
            "name": g["name"],
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(g["owner_id"]),
            "application_id": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "system_channel_id": _sid(g.get("system_channel_id")),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "features": [],
            "vanity_url_code": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "roles": [self._role_wire(r) for r in sorted(g["roles"].values(), key=lambda r: r["position"])],
            "emojis": [],
            "stickers": [],
            "joined_at": g["joined_at"],
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(g["members"]),
            "members": [self._member_wire(guild_id, self.bot_user_id)],
            "channels": [self._channel_wire_from(c) for c in chans if c["type"] not in THREAD_TYPES],
            "threads": [
                self._channel_wire_from(c) for c in chans if c["type"] in THREAD_TYPES and not c["archived"]
            ],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "incidents_data": None,
        }

    def _guild_rest_wire(self, guild_id: int) -> Dict[str, Any]:
        wire = self._guild_create_payload(guild_id)
        for key in ("members", "channels", "threads", "voice_states", "presences", "joined_at", "large",
                    "unavailable", "lazy", "member_count", "stage_instances", "guild_scheduled_events",
                    "soundboard_sounds", "embedded_activities"):
            wire.pop(key, None)
        return wire

    def _app_wire(self) -> Dict[str, Any]:
        owner_id = self._app_owner
        return {
            "id": str(self.app_id),
            "name": self.bot_user["username"],
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "bot": self._user(self.bot_user_id),
            "owner": self._user(owner_id),
            "team": None,
            "verify_key": hashlib.sha256(str(self.app_id).encode()).hexdigest(),
            "flags": 0,
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "approximate_guild_count": len(self.guilds),
            "integration_types_config": {"0": {}},
        }

    # ------------------------------------------------------------------ messages
    def _channel_messages(self, channel_id: int) -> List[_Msg]:
        return [m for m in self._messages.get(channel_id, []) if not m.deleted]

    def _public(self, msg: _Msg) -> Dict[str, Any]:
        return copy.deepcopy(msg.wire)

    def _recorded(self, msg: _Msg) -> Dict[str, Any]:
        out = copy.deepcopy(msg.wire)
        out.update(copy.deepcopy(msg.meta))
        return out

    def _create_message(
        self,
        ch: Dict[str, Any],
        body: Dict[str, Any],
        *,
        author: Dict[str, Any],
        files: List[Dict[str, Any]],
        webhook: Optional[Dict[str, Any]] = None,
        interaction: Optional[InteractionRecord] = None,
        msg_type: int = 0,
        ephemeral: bool = False,
        extra_flags: int = 0,
        message_id: Optional[int] = None,
        can_mention_everyone: bool = True,
    ) -> _Msg:
        mid = message_id or self._snowflake()
        content = "" if body.get("content") is None else str(body.get("content"))
        users, roles, everyone = resolve_mentions(
            content, body.get("allowed_mentions"), can_mention_everyone=can_mention_everyone
        )
        flags = (int(body.get("flags") or 0) & _SETTABLE_FLAGS) | extra_flags
        if ephemeral:
            flags |= MSG_FLAG_EPHEMERAL
        wire: Dict[str, Any] = {
            "id": str(mid),
            "type": msg_type,
            "content": content,
            "channel_id": str(ch["id"]),
            "author": author,
            "attachments": [self._attachment_wire(f) for f in files],
            "embeds": [self._normalize_embed(e) for e in body.get("embeds") or []],
            "mentions": [self._user(u) for u in users if u in self.users],
            "mention_roles": [str(r) for r in roles],
            "mention_everyone": everyone,
            "pinned": False,
            "tts": bool(body.get("tts", False)),
            "timestamp": _iso(),
            "edited_timestamp": None,
            "flags": flags,
            "components": copy.deepcopy(body.get("components") or []),
        }
        if body.get("nonce") is not None:
            wire["nonce"] = body["nonce"]
        if webhook is not None:
            wire["webhook_id"] = str(webhook["id"])
        if interaction is not None:
            wire["webhook_id"] = str(self.app_id)
            wire["application_id"] = str(self.app_id)
            data = interaction.payload.get("data", {})
            wire["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": self._user(interaction.user_id),
                "authorizing_integration_owners": interaction.payload.get("authorizing_integration_owners", {}),
                **({"name": data["name"], "command_type": data.get("type", 1)} if interaction.type == 2 else {}),
            }
        if body.get("message_reference"):
            wire["message_reference"] = dict(body["message_reference"], channel_id=str(ch["id"]))
        if ch["type"] in THREAD_TYPES:
            wire["position"] = ch["total_message_sent"]
        meta = {
            "allowed_mentions": copy.deepcopy(body.get("allowed_mentions")),
            "nonce": body.get("nonce"),
            "username": body.get("username") if webhook else None,
            "avatar_url": body.get("avatar_url") if webhook else None,
            "via": "webhook" if webhook else ("interaction" if interaction else "bot"),
        }
        msg = _Msg(wire=wire, meta=meta, created=time.monotonic(), ephemeral=ephemeral)
        self._message_index[mid] = msg
        if not ephemeral:
            self._messages.setdefault(ch["id"], []).append(msg)
            ch["last_message_id"] = mid
            if ch["type"] in THREAD_TYPES:
                ch["message_count"] += 1
                ch["total_message_sent"] += 1
            self._emit_message("MESSAGE_CREATE", msg, ch)
        self._notify()
        return msg

    def _emit_message(self, event: str, msg: _Msg, ch: Dict[str, Any]) -> None:
        data = dict(self._public(msg), guild_id=str(ch["guild_id"]))
        author_id = int(msg.wire["author"]["id"])
        if "webhook_id" not in msg.wire and author_id in self.guilds[ch["guild_id"]]["members"]:
            member = self._member_wire(ch["guild_id"], author_id)
            member.pop("user")
            data["member"] = member
        self._emit(event, data)

    def _attachment_wire(self, f: Dict[str, Any]) -> Dict[str, Any]:
        aid = self._snowflake()
        url = f"{self.url}/attachments/{aid}/{f['filename']}"
        return {
            "id": str(aid),
            "filename": f["filename"],
            "size": f["size"],
            "url": url,
            "proxy_url": url,
            "content_type": f.get("content_type"),
        }

    @staticmethod
    def _normalize_embed(embed: Dict[str, Any]) -> Dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in embed.items() if v is not None}
        out.setdefault("type", "rich")
        return out

    def _author_for_webhook(self, hook: Dict[str, Any], body: Dict[str, Any]) -> Dict[str, Any]:
        avatar = hook["avatar"]
        if body.get("avatar_url"):
            avatar = hashlib.md5(str(body["avatar_url"]).encode()).hexdigest()
        return {
            "id": str(hook["id"]),
            "username": body.get("username") or hook["name"],
            "avatar": avatar,
            "discriminator": "0000",
            "bot": True,
            "global_name": None,
            "public_flags": 0,
            "flags": 0,
        }

    def get_message(self, message_id: int) -> Optional[Dict[str, Any]]:
        """A message by id as recorded (includes ephemeral ones), or None if unknown/deleted."""
        msg = self._message_index.get(int(message_id))
        if msg is None or msg.deleted:
            return None
        return self._recorded(msg)

    # ------------------------------------------------------------------ recording API
    def messages(self, channel_id: int) -> List[Dict[str, Any]]:
        """Messages visible in a channel/thread, oldest first, with what was sent
        (``allowed_mentions``, ``nonce``, webhook ``username``/``avatar_url``, ``via``)."""
        return [self._recorded(m) for m in self._channel_messages(channel_id)]

    def all_messages(self) -> List[Dict[str, Any]]:
        out = [m for m in self._message_index.values() if not m.deleted and not m.ephemeral]
        return [self._recorded(m) for m in sorted(out, key=lambda m: m.id)]

    def threads(self, parent_id: int) -> List[Dict[str, Any]]:
        """Threads (and forum posts) whose parent is ``parent_id``, oldest first."""
        found = [c for c in self.channels.values() if c["type"] in THREAD_TYPES and c["parent_id"] == parent_id]
        return [self._channel_wire_from(c) for c in sorted(found, key=lambda c: c["id"])]

    def commands(self, guild_id: Optional[int] = None) -> List[Dict[str, Any]]:
        """Application commands as last synced (guild_id None: global)."""
        return copy.deepcopy(self._commands.get(guild_id, []))

    def command_sync_count(self, guild_id: Any = "any") -> int:
        """How many PUTs of the command list happened (for one guild, None=global, or any)."""
        return sum(1 for s in self.command_syncs if guild_id == "any" or s["guild_id"] == guild_id)

    def count_status(self, status: int) -> int:
        return sum(1 for r in self.requests if r.status == status)

    def requests_to(self, route: RouteSpec, method: Optional[str] = None) -> List[RecordedRequest]:
        """Requests whose route template or concrete path matches (``"POST /channels/{channel_id}/messages"``)."""
        matcher = _route_matcher(route)
        return [r for r in self.requests if (method is None or r.method == method.upper()) and matcher(r.method, r.route, r.path)]

    @property
    def identify_intents(self) -> List[int]:
        return [d.get("intents") for d in self.identifies]

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0, *, what: str = "condition") -> Any:
        """Wait (without polling) until predicate() is truthy; re-checked on every recorded change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.requests[-8:])
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last requests: [{recent}]")
            event = self._change
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_for_messages(self, channel_id: int, n: int = 1, timeout: float = 5.0) -> List[Dict[str, Any]]:
        await self.wait_until(
            lambda: len(self._channel_messages(channel_id)) >= n,
            timeout,
            what=f"{n} message(s) in channel {channel_id}",
        )
        return self.messages(channel_id)

    async def wait_for_request(self, route: RouteSpec, n: int = 1, timeout: float = 5.0, *, status: Optional[int] = None) -> List[RecordedRequest]:
        def done() -> Any:
            found = [r for r in self.requests_to(route) if status is None or r.status == status]
            return found if len(found) >= n else None

        return await self.wait_until(done, timeout, what=f"{n} request(s) to {route!r}")

    # ------------------------------------------------------------------ fault knobs
    def fail_next(self, n: int = 1, status: int = 500, route: RouteSpec = None) -> None:
        """The next n requests matching ``route`` (template/path with optional method, or callable) get ``status``."""
        self._faults.append(_Fault(n, _route_matcher(route), status))

    def rate_limit_next(self, n: int = 1, retry_after: float = 0.2, global_: bool = False, route: RouteSpec = None) -> None:
        """The next n matching requests get a 429 (with Via, JSON body, retry_after, global, scope)."""
        self._faults.append(_Fault(n, _route_matcher(route), 429, retry_after=retry_after, global_=global_))

    def clear_faults(self) -> None:
        self._faults.clear()

    # ------------------------------------------------------------------ HTTP plumbing
    def _r(self, method: str, template: str, handler: Handler, **kw: Any) -> None:
        self._routes.append(_Route(method, template, handler, **kw))

    def _register_routes(self) -> None:
        r = self._r
        r("GET", "/users/@me", self._h_me)
        r("GET", "/oauth2/applications/@me", self._h_app)
        r("GET", "/applications/@me", self._h_app)
        r("GET", "/gateway/bot", self._h_gateway_bot)
        r("GET", "/gateway", self._h_gateway, auth=False)
        r("GET", "/applications/{application_id}/commands", self._h_get_commands)
        r("PUT", "/applications/{application_id}/commands", self._h_put_commands)
        r("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._h_get_commands)
        r("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._h_put_commands)
        r("GET", "/guilds/{guild_id}", self._h_get_guild)
        r("GET", "/guilds/{guild_id}/channels", self._h_get_guild_channels)
        r("GET", "/guilds/{guild_id}/threads/active", self._h_active_threads)
        r("GET", "/guilds/{guild_id}/members/{user_id}", self._h_get_member)
        r("GET", "/channels/{channel_id}", self._h_get_channel)
        r("GET", "/channels/{channel_id}/messages", self._h_get_messages)
        r("POST", "/channels/{channel_id}/messages", self._h_post_message, bucket="message")
        r("GET", "/channels/{channel_id}/messages/{message_id}", self._h_get_message)
        r("PATCH", "/channels/{channel_id}/messages/{message_id}", self._h_edit_message)
        r("DELETE", "/channels/{channel_id}/messages/{message_id}", self._h_delete_message)
        r("POST", "/channels/{channel_id}/messages/{message_id}/crosspost", self._h_crosspost)
        r("POST", "/channels/{channel_id}/messages/{message_id}/threads", self._h_thread_from_message, bucket="message")
        r("POST", "/channels/{channel_id}/threads", self._h_post_threads, bucket="message")
        r("POST", "/channels/{channel_id}/typing", self._h_typing)
        r("GET", "/channels/{channel_id}/webhooks", self._h_list_webhooks)
        r("POST", "/channels/{channel_id}/webhooks", self._h_create_webhook)
        r("POST", "/interactions/{interaction_id}/{token}/callback", self._h_callback, auth=False, bucket=None)
        r("GET", "/webhooks/{webhook_id}/{token}/messages/{message_id}", self._h_webhook_message, auth=False)
        r("PATCH", "/webhooks/{webhook_id}/{token}/messages/{message_id}", self._h_webhook_message, auth=False)
        r("DELETE", "/webhooks/{webhook_id}/{token}/messages/{message_id}", self._h_webhook_message, auth=False)
        r("GET", "/webhooks/{webhook_id}/{token}", self._h_get_webhook, auth=False)
        r("DELETE", "/webhooks/{webhook_id}/{token}", self._h_delete_webhook, auth=False)
        r("POST", "/webhooks/{webhook_id}/{token}", self._h_execute_webhook, auth=False, bucket="message")

    def _match(self, method: str, path: str) -> Tuple[_Route, Dict[str, str]]:
        path_matched = False
        for route in self._routes:
            m = route.regex.fullmatch(path)
            if m is None:
                continue
            path_matched = True
            if route.method == method:
                return route, m.groupdict()
        if path_matched:
            raise ApiError(405, {"message": "405: Method Not Allowed", "code": 0})
        raise ApiError(404, {"message": "404: Not Found", "code": 0})

    async def _read_body(self, request: web.Request, rec: RecordedRequest) -> Tuple[Any, List[Dict[str, Any]]]:
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            form = await request.post()
            body = None
            files = []
            for name, value in form.items():
                if name == "payload_json":
                    text = value if isinstance(value, str) else value.file.read().decode()
                    body = self._loads(text)
                elif hasattr(value, "file"):
                    data = value.file.read()
                    files.append({"name": name, "filename": value.filename, "size": len(data), "content_type": value.content_type})
            return body, files
        raw = await request.read()
        if not raw:
            return None, []
        if ctype != "application/json":
            raise ApiError(400, discord_error(50035, "Invalid Form Body"))
        return self._loads(raw.decode()), []

    @staticmethod
    def _loads(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise ApiError(400, discord_error(50109, "The request body contains invalid JSON.")) from None

    def _authorized(self, request: web.Request) -> bool:
        return self._token_valid and request.headers.get("Authorization") == f"Bot {self.token}"

    def _take_fault(self, method: str, template: Optional[str], path: str) -> Optional[_Fault]:
        for fault in self._faults:
            if fault.remaining > 0 and fault.matcher(method, template, path):
                fault.remaining -= 1
                return fault
        return None

    @staticmethod
    def _ceil_ms(seconds: float) -> float:
        return math.ceil(max(seconds, 0.0) * 1000) / 1000

    def _ratelimited(self, retry_after: float, *, global_: bool, scope: str, headers: Dict[str, str]) -> ApiError:
        retry_after = self._ceil_ms(retry_after)
        h = dict(headers)
        h.update({"Retry-After": str(max(1, math.ceil(retry_after))), "X-RateLimit-Scope": scope})
        if global_:
            h["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": global_}
        return ApiError(429, body, h)

    def _check_global(self) -> None:
        now = asyncio.get_running_loop().time()
        start, count = self._global_window
        if now - start >= 1.0:
            start, count = now, 0
        if count >= self.global_rate:
            raise self._ratelimited(start + 1.0 - now, global_=True, scope="global", headers={})
        self._global_window = (start, count + 1)

    def _check_bucket(self, route: _Route, params: Dict[str, str]) -> Dict[str, str]:
        limit, period = self.message_rate if route.bucket == "message" else self.route_rate
        major = params.get("channel_id") or params.get("guild_id") or (
            f"{params['webhook_id']}/{params['token']}" if "webhook_id" in params else ""
        )
        key = (route.bucket_hash, major)
        now = asyncio.get_running_loop().time()
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket.reset_at or bucket.limit != limit:
            bucket = self._buckets[key] = _Bucket(limit, period, now + period)
        reset_after = self._ceil_ms(bucket.reset_at - now)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": route.bucket_hash,
        }
        if bucket.count >= limit:
            headers["X-RateLimit-Remaining"] = "0"
            raise self._ratelimited(bucket.reset_at - now, global_=False, scope="user", headers=headers)
        bucket.count += 1
        headers["X-RateLimit-Remaining"] = str(limit - bucket.count)
        return headers

    async def _http_handler(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        prefix = f"/api/v{L.API_VERSION}"
        path = request.path[len(prefix):] if request.path.startswith(prefix + "/") else request.path
        rec = RecordedRequest(
            method=request.method, path=path, query=dict(request.query), headers=headers, time=time.time()
        )
        rl_headers: Dict[str, str] = {}
        route: Optional[_Route] = None
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            if not request.path.startswith(prefix + "/"):
                raise ApiError(404, {"message": "404: Not Found", "code": 0})
            route, params = self._match(request.method, path)
            rec.route = route.template
            rec.json, rec.files = await self._read_body(request, rec)
            if route.auth:
                rec.authorized = self._authorized(request)
                if not rec.authorized:
                    raise ApiError(401, {"message": "401: Unauthorized", "code": 0})
            fault = self._take_fault(request.method, route.template, path)
            if fault is not None:
                if fault.status == 429:
                    raise self._ratelimited(
                        fault.retry_after, global_=fault.global_, scope="global" if fault.global_ else "user", headers={}
                    )
                if fault.status >= 500:
                    raise ApiError(fault.status, {"message": f"{fault.status}: Server Error", "code": 0})
                raise ApiError(fault.status, {"message": f"{fault.status}: Injected", "code": 0})
            if route.auth:
                self._check_global()
            if route.bucket:
                rl_headers = self._check_bucket(route, params)
            req = _Req(request.method, path, params, dict(request.query), rec.json, rec.files, headers)
            result = await route.handler(req)
            status, payload = result if isinstance(result, tuple) else (200, result)
            if status == 204:
                response: web.StreamResponse = web.Response(status=204, headers=dict(rl_headers, Via="1.1 google"))
            else:
                response = _json_response(status, payload, rl_headers)
            rec.status, rec.response = status, payload
        except ApiError as exc:
            merged = dict(rl_headers)
            merged.update(exc.headers)
            response = _json_response(exc.status, exc.body, merged)
            rec.status, rec.response = exc.status, exc.body
        except Exception as exc:  # a bug in the fake: answer 500 and make it visible
            rec.status, rec.response = 500, {"message": f"fake internal error: {exc!r}", "code": 0}
            response = _json_response(500, rec.response)
            self.internal_errors.append(exc)
        self.requests.append(rec)
        if rec.route is None or rec.status == 405:
            self.unknown_routes.append(rec)
        self._notify()
        return response

    # ------------------------------------------------------------------ gateway events
    def _emit(self, event: str, data: Union[Dict[str, Any], Callable[[], Dict[str, Any]]]) -> "asyncio.Future[None]":
        """Queue a dispatch to every live session (in order). Returns a future set once sent."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self._events is None or not self._sessions:
            fut: asyncio.Future[None]
            if loop is not None:
                fut = loop.create_future()
                fut.set_result(None)
                return fut
            return None  # type: ignore[return-value]
        fut = loop.create_future()
        targets = [s for s in self._sessions.values() if not s.invalid]
        self._events.put_nowait((event, data, targets, fut))
        return fut

    async def dispatch(self, event: str, data: Dict[str, Any]) -> None:
        """Send an arbitrary gateway DISPATCH to the bot (filtered by its intents)."""
        await self._emit(event, data)

    async def settle(self) -> None:
        """Wait until every queued gateway event has been sent."""
        await self._emit("__SETTLE__", {})

    async def _dispatch_loop(self) -> None:
        assert self._events is not None
        while True:
            event, data, targets, fut = await self._events.get()
            try:
                if event != "__SETTLE__":
                    payload = data() if callable(data) else data
                    needed = _EVENT_INTENTS.get(event)
                    for session in targets:
                        if session.invalid or (needed is not None and not session.intents & needed):
                            continue
                        d = payload
                        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
                            d = self._strip_content(session, payload)
                        async with session.lock:
                            await self._send_dispatch(session, event, d)
            except Exception as exc:  # keep the loop alive, but visible
                self.internal_errors.append(exc)
            finally:
                if not fut.done():
                    fut.set_result(None)

    def _strip_content(self, session: _Session, data: Dict[str, Any]) -> Dict[str, Any]:
        if session.intents & INTENT_MESSAGE_CONTENT:
            return data
        if data.get("author", {}).get("id") == str(self.bot_user_id):
            return data
        if any(u.get("id") == str(self.bot_user_id) for u in data.get("mentions", [])):
            return data
        return dict(data, content="", embeds=[], attachments=[], components=[])

    async def _send_dispatch(self, session: _Session, event: str, data: Dict[str, Any], *, log: bool = True) -> None:
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        if log:
            session.log.append(frame)
        ws = session.ws
        if ws is not None and not ws.closed:
            try:
                await ws.send_str(json.dumps(frame))
            except (ConnectionError, RuntimeError):
                pass
        self._notify()

    @staticmethod
    def _redact(d: Any) -> Any:
        if isinstance(d, dict) and "token" in d:
            return dict(d, token="<redacted>")
        return d

    async def _gateway_handler(self, request: web.Request) -> web.StreamResponse:
        if self._gateway_gate is not None:
            await self._gateway_gate.wait()  # gateway_paused(): simulate an outage
        if self._closing:
            return web.Response(status=503, text="fake discord is shutting down")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        info = {"path": request.path, "query": dict(request.query), "time": time.time(), "closed_by_server": False}
        self.gateway_connections.append(info)
        self._open_ws[ws] = info
        session: Optional[_Session] = None
        try:
            await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None}))
            self._notify()
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(msg.data)
                    op, d = payload["op"], payload.get("d")
                except (ValueError, KeyError, TypeError):
                    await self._ws_close(ws, 4002, b"Error while decoding payload.")
                    break
                self.gateway_received.append({"op": op, "d": self._redact(d), "time": time.time()})
                self._notify()
                if op == 1:
                    await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
                elif op == 2:
                    if session is not None:
                        await self._ws_close(ws, 4005, b"Already authenticated.")
                        break
                    session = await self._identify(ws, d or {})
                elif op == 6:
                    session = await self._resume(ws, d or {})
                elif session is None:
                    await self._ws_close(ws, 4003, b"Not authenticated.")
                    break
                elif op in (3, 4, 8, 31, 37):
                    pass  # presence / voice / request members / soundboard: recorded only
                else:
                    await self._ws_close(ws, 4001, b"Unknown opcode.")
                    break
        finally:
            self._open_ws.pop(ws, None)
            code = ws.close_code
            by = "server" if info["closed_by_server"] else "client"
            self.gateway_closes.append({"code": code, "by": by, "time": time.time()})
            if session is not None and session.ws is ws:
                session.ws = None
                if by == "client" and code in (1000, 1001):
                    session.invalid = True  # a clean close ends the session, like Discord
                    self._sessions.pop(session.id, None)
            self._notify()
        return ws

    async def _ws_close(self, ws: web.WebSocketResponse, code: int, message: bytes) -> None:
        if ws in self._open_ws:
            self._open_ws[ws]["closed_by_server"] = True
        await ws.close(code=code, message=message)

    async def _identify(self, ws: web.WebSocketResponse, d: Dict[str, Any]) -> Optional[_Session]:
        self.identifies.append(self._redact(dict(d)))
        self._notify()
        if not self._token_valid or d.get("token") != self.token:
            await self._ws_close(ws, 4004, b"Authentication failed.")
            return None
        intents = d.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents & ~ALL_INTENTS:
            await self._ws_close(ws, 4013, b"Invalid intent(s).")
            return None
        if intents & PRIVILEGED_INTENTS & ~self.privileged_intents:
            await self._ws_close(ws, 4014, b"Disallowed intent(s).")
            return None
        session = _Session(id=secrets.token_hex(16), intents=intents, shard=d.get("shard"))
        async with session.lock:
            session.ws = ws
            self._sessions[session.id] = session
            ready = {
                "v": L.API_VERSION,
                "user": dict(self.bot_user),
                "user_settings": {},
                "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
                "session_id": session.id,
                "session_type": "normal",
                "resume_gateway_url": self.resume_gateway_url,
                "application": {"id": str(self.app_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": ["local"],
                "_trace": ["[\"fakediscord\"]"],
            }
            if session.shard is not None:
                ready["shard"] = session.shard
            await self._send_dispatch(session, "READY", ready)
            if intents & INTENT_GUILDS:
                for gid in list(self.guilds):
                    await self._send_dispatch(session, "GUILD_CREATE", self._guild_create_payload(gid))
        return session

    async def _resume(self, ws: web.WebSocketResponse, d: Dict[str, Any]) -> Optional[_Session]:
        self.resumes.append(self._redact(dict(d)))
        self._notify()
        if not self._token_valid or d.get("token") != self.token:
            await self._ws_close(ws, 4004, b"Authentication failed.")
            return None
        session = self._sessions.get(str(d.get("session_id")))
        if session is None or session.invalid:
            await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
            return None
        seq = d.get("seq") or 0
        if seq > session.seq:
            await self._ws_close(ws, 4007, b"Invalid seq.")
            return None
        async with session.lock:
            old = session.ws
            session.ws = ws
            if old is not None and old is not ws and not old.closed:
                await self._ws_close(old, 4000, b"Session resumed elsewhere.")
            for frame in session.log:
                if frame["s"] > seq:
                    self.replayed.append(frame)
                    await ws.send_str(json.dumps(frame))
            await self._send_dispatch(session, "RESUMED", {"_trace": ["[\"fakediscord\"]"]}, log=False)
        return session

    async def drop_gateway(self, code: int = 4000, *, resumable: bool = True) -> None:
        """Close every gateway socket with ``code``. resumable=False also forgets the sessions
        (the client's RESUME then gets INVALID_SESSION and it must IDENTIFY again)."""
        for session in list(self._sessions.values()):
            if not resumable:
                session.invalid = True
                self._sessions.pop(session.id, None)
        for ws in list(self._open_ws):
            await self._ws_close(ws, code, b"dropped by test")

    def gateway_paused(self) -> "_GatewayPause":
        """``async with fake.gateway_paused():`` new gateway connections wait until the block ends.

        Combined with drop_gateway() this simulates an outage during which events pile up
        and must be replayed on RESUME."""
        return _GatewayPause(self)

    async def send_reconnect(self) -> None:
        """Send op 7 RECONNECT on every socket (the client should close and RESUME)."""
        for ws in list(self._open_ws):
            await ws.send_str(json.dumps({"op": 7, "d": None, "s": None, "t": None}))

    @property
    def connected_sessions(self) -> int:
        return sum(1 for s in self._sessions.values() if s.ws is not None and not s.ws.closed and not s.invalid)

    async def wait_for_session(self, timeout: float = 5.0) -> None:
        await self.wait_until(lambda: self.connected_sessions > 0, timeout, what="an identified gateway session")

    # ================================================================== REST handlers
    def _channel(self, channel_id: Any) -> Dict[str, Any]:
        try:
            return self.channels[int(channel_id)]
        except (KeyError, ValueError):
            raise ApiError(404, discord_error(10003, "Unknown Channel")) from None

    def _guild(self, guild_id: Any) -> Dict[str, Any]:
        try:
            return self.guilds[int(guild_id)]
        except (KeyError, ValueError):
            raise ApiError(404, discord_error(10004, "Unknown Guild")) from None

    def _message_in(self, ch: Dict[str, Any], message_id: Any) -> _Msg:
        try:
            msg = self._message_index[int(message_id)]
        except (KeyError, ValueError):
            raise ApiError(404, discord_error(10008, "Unknown Message")) from None
        if msg.deleted or msg.ephemeral or msg.channel_id != ch["id"]:
            raise ApiError(404, discord_error(10008, "Unknown Message"))
        return msg

    @staticmethod
    def _body(req: _Req) -> Dict[str, Any]:
        if req.json is None:
            return {}
        if not isinstance(req.json, dict):
            raise ApiError(400, discord_error(50109, "The request body contains invalid JSON."))
        return req.json

    def _check_files(self, files: List[Dict[str, Any]]) -> None:
        if len(files) > L.MAX_ATTACHMENTS_PER_MESSAGE:
            e = FormErrors()
            e.max_length(("files",), L.MAX_ATTACHMENTS_PER_MESSAGE)
            raise invalid_form_body(e.tree)
        if sum(f["size"] for f in files) > L.MAX_ATTACHMENT_BYTES:
            raise ApiError(413, discord_error(40005, "Request entity too large"))

    def _content_perms(self, body: Dict[str, Any], files: List[Dict[str, Any]], send_bit: int) -> int:
        bits = send_bit
        if body.get("embeds"):
            bits |= P.EMBED_LINKS  # type: ignore[attr-defined]  (real Discord drops them silently; strict here)
        if files:
            bits |= P.ATTACH_FILES  # type: ignore[attr-defined]
        return bits

    def _bot_author(self) -> Dict[str, Any]:
        return self._user(self.bot_user_id)

    async def _h_me(self, req: _Req) -> Any:
        return dict(self.bot_user)

    async def _h_app(self, req: _Req) -> Any:
        return self._app_wire()

    async def _h_gateway_bot(self, req: _Req) -> Any:
        return {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1},
        }

    async def _h_gateway(self, req: _Req) -> Any:
        return {"url": self.gateway_url}

    # ---- application commands
    def _check_app(self, req: _Req) -> None:
        if req.params["application_id"] != str(self.app_id):
            raise ApiError(403, discord_error(50001, "Missing Access"))

    async def _h_get_commands(self, req: _Req) -> Any:
        self._check_app(req)
        guild_id = int(req.params["guild_id"]) if "guild_id" in req.params else None
        if guild_id is not None:
            self._guild(guild_id)
        return self.commands(guild_id)

    async def _h_put_commands(self, req: _Req) -> Any:
        self._check_app(req)
        guild_id = int(req.params["guild_id"]) if "guild_id" in req.params else None
        if guild_id is not None:
            self._guild(guild_id)
        body = req.json
        if not isinstance(body, list):
            raise ApiError(400, discord_error(50109, "The request body contains invalid JSON."))
        errors = FormErrors()
        seen = set()
        for i, cmd in enumerate(body):
            if not isinstance(cmd, dict):
                errors.add((i,), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
                continue
            ctype = cmd.get("type", 1)
            self._check_command(errors, (i,), cmd, chat_input=ctype == 1)
            key = (cmd.get("name"), ctype)
            if key in seen:
                errors.add((i, "name"), "APPLICATION_COMMANDS_DUPLICATE_NAME", f"Application command names must be unique")
            seen.add(key)
        if sum(1 for c in body if isinstance(c, dict) and c.get("type", 1) == 1) > L.MAX_GLOBAL_CHAT_INPUT_COMMANDS:
            errors.max_length((), L.MAX_GLOBAL_CHAT_INPUT_COMMANDS)
        errors.raise_if_any()
        old = {(c["name"], c["type"]): c for c in self._commands.get(guild_id, [])}
        stored = []
        for cmd in body:
            ctype = cmd.get("type", 1)
            prev = old.get((cmd["name"], ctype))
            wire = {
                "id": prev["id"] if prev else str(self._snowflake()),
                "application_id": str(self.app_id),
                "version": str(self._snowflake()),
                "type": ctype,
                "name": cmd["name"],
                "name_localizations": cmd.get("name_localizations"),
                "description": cmd.get("description", ""),
                "description_localizations": cmd.get("description_localizations"),
                "options": copy.deepcopy(cmd.get("options") or []),
                "default_member_permissions": cmd.get("default_member_permissions"),
                "dm_permission": cmd.get("dm_permission", True),
                "contexts": cmd.get("contexts"),
                "integration_types": cmd.get("integration_types", [0]),
                "nsfw": cmd.get("nsfw", False),
            }
            if guild_id is not None:
                wire["guild_id"] = str(guild_id)
            stored.append(wire)
        self._commands[guild_id] = stored
        self.command_syncs.append({"guild_id": guild_id, "body": copy.deepcopy(body), "time": time.time()})
        return copy.deepcopy(stored)

    def _check_command(self, errors: FormErrors, path: Tuple[Any, ...], cmd: Dict[str, Any], *, chat_input: bool, depth: int = 0) -> None:
        name = cmd.get("name")
        if not isinstance(name, str) or (chat_input and (not re.fullmatch(L.COMMAND_NAME_PATTERN, name) or name != name.lower())):
            errors.add(path + ("name",), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        elif not chat_input and not (1 <= len(name) <= L.MAX_COMMAND_NAME):
            errors.bad_length(path + ("name",), 1, L.MAX_COMMAND_NAME)
        desc = cmd.get("description", "")
        if chat_input and not (1 <= len(desc or "") <= L.MAX_COMMAND_DESCRIPTION):
            errors.bad_length(path + ("description",), 1, L.MAX_COMMAND_DESCRIPTION)
        options = cmd.get("options") or []
        if len(options) > L.MAX_COMMAND_OPTIONS:
            errors.max_length(path + ("options",), L.MAX_COMMAND_OPTIONS)
        seen_optional = False
        names = set()
        for j, opt in enumerate(options):
            op = path + ("options", j)
            if opt.get("name") in names:
                errors.add(op + ("name",), "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique")
            names.add(opt.get("name"))
            if opt.get("type") in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP):
                self._check_command(errors, op, opt, chat_input=True, depth=depth + 1)
                continue
            self._check_command(errors, op, dict(opt, options=[]), chat_input=True, depth=depth + 1)
            if opt.get("required"):
                if seen_optional:
                    errors.add(op + ("required",), "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID", "Required options must be placed before non-required options")
            else:
                seen_optional = True
            choices = opt.get("choices") or []
            if len(choices) > L.MAX_COMMAND_CHOICES:
                errors.max_length(op + ("choices",), L.MAX_COMMAND_CHOICES)
            if choices and opt.get("autocomplete"):
                errors.add(op + ("autocomplete",), "APPLICATION_COMMAND_OPTION_CHOICES_AND_AUTOCOMPLETE", "Autocomplete cannot be set with choices")

    # ---- guilds
    async def _h_get_guild(self, req: _Req) -> Any:
        g = self._guild(req.params["guild_id"])
        return self._guild_rest_wire(g["id"])

    async def _h_get_guild_channels(self, req: _Req) -> Any:
        g = self._guild(req.params["guild_id"])
        return [self._channel_wire_from(c) for c in self.channels.values() if c["guild_id"] == g["id"] and c["type"] not in THREAD_TYPES]

    async def _h_active_threads(self, req: _Req) -> Any:
        g = self._guild(req.params["guild_id"])
        threads = [self._channel_wire_from(c) for c in self.channels.values() if c["guild_id"] == g["id"] and c["type"] in THREAD_TYPES and not c["archived"]]
        return {"threads": threads, "members": []}

    async def _h_get_member(self, req: _Req) -> Any:
        g = self._guild(req.params["guild_id"])
        try:
            uid = int(req.params["user_id"])
            g["members"][uid]
        except (KeyError, ValueError):
            raise ApiError(404, discord_error(10007, "Unknown Member")) from None
        return self._member_wire(g["id"], uid)

    # ---- channels & messages
    async def _h_get_channel(self, req: _Req) -> Any:
        ch = self._channel(req.params["channel_id"])
        self._need(ch, 0, access=True)
        return self._channel_wire_from(ch)

    async def _h_get_messages(self, req: _Req) -> Any:
        ch = self._channel(req.params["channel_id"])
        self._need(ch, 0, access=True)
        try:
            limit = int(req.query.get("limit", L.DEFAULT_MESSAGE_FETCH_LIMIT))
        except ValueError:
            limit = -1
        if not 1 <= limit <= L.MAX_MESSAGE_FETCH_LIMIT:
            e = FormErrors()
            e.add(("limit",), "NUMBER_TYPE_MAX", f"int value should be less than or equal to {L.MAX_MESSAGE_FETCH_LIMIT}.")
            raise invalid_form_body(e.tree)
        if not self.permissions_for(ch["id"]) & P.READ_MESSAGE_HISTORY:  # type: ignore[attr-defined]
            return []  # Discord returns no messages without Read Message History
        msgs = self._channel_messages(ch["id"])
        if "before" in req.query:
            msgs = [m for m in msgs if m.id < int(req.query["before"])]
        if "after" in req.query:
            msgs = [m for m in msgs if m.id > int(req.query["after"])][:limit]
        newest_first = list(reversed(msgs))[:limit]
        return [self._public(m) for m in newest_first]

    async def _h_get_message(self, req: _Req) -> Any:
        ch = self._channel(req.params["channel_id"])
        self._need(ch, P.READ_MESSAGE_HISTORY)  # type: ignore[attr-defined]
        return self._public(self._message_in(ch, req.params["message_id"]))

    def _send_bit(self, ch: Dict[str, Any]) -> int:
        return P.SEND_MESSAGES_IN_THREADS if ch["type"] in THREAD_TYPES else P.SEND_MESSAGES  # type: ignore[attr-defined]

    def _unarchive_for_send(self, ch: Dict[str, Any]) -> None:
        if ch["type"] in THREAD_TYPES and ch["archived"]:
            if ch["locked"]:
                raise ApiError(400, discord_error(50083, "Thread is archived"))
            ch["archived"] = False
            self._emit("THREAD_UPDATE", lambda: self._channel_wire(ch["id"]))

    async def _h_post_message(self, req: _Req) -> Any:
        ch = self._channel(req.params["channel_id"])
        self._need(ch, 0, access=True)
        if ch["type"] not in MESSAGEABLE_TYPES:
            raise ApiError(400, discord_error(50008, "Cannot send messages in a non-text channel"))
        body = validate_new_message(req.json if req.json is not None else {}, n_files=len(req.files))
        self._check_files(req.files)
        self._need(ch, self._content_perms(body, req.files, self._send_bit(ch)))
        ref = body.get("message_reference")
        if ref and ref.get("message_id") and ref.get("fail_if_not_exists", True):
            target = self._message_index.get(int(ref["message_id"]))
            if target is None or target.deleted or target.channel_id != int(ref.get("channel_id") or ch["id"]):
                e = FormErrors()
                e.add(("message_reference",), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
                raise invalid_form_body(e.tree)
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            key = (ch["id"], self.bot_user_id, str(nonce))
            hit = self._nonces.get(key)
            if hit is not None and time.monotonic() - hit[1] <= L.NONCE_DEDUPE_WINDOW:
                original = self._message_index.get(hit[0])
                if original is not None and not original.deleted:
                    return self._public(original)
        self._unarchive_for_send(ch)
        msg = self._create_message(
            ch,
            body,
            author=self._bot_author(),
            files=req.files,
            msg_type=19 if body.get("message_reference") else 0,
            can_mention_everyone=bool(self.permissions_for(ch["id"]) & P.MENTION_EVERYONE),  # type: ignore[attr-defined]
        )
        if nonce is not None:
            self._nonces[(ch["id"], self.bot_user_id, str(nonce))] = (msg.id, time.monotonic())
        return self._public(msg)

    def _apply_edit(self, msg: _Msg, body: Dict[str, Any], *, path: Tuple[Any, ...] = (), clear_loading: bool = True, mark_edited: bool = True) -> None:
        errors = FormErrors()
        check_message_fields(errors, path, body)
        errors.raise_if_any()
        merged = dict(msg.wire)
        for key in ("content", "embeds", "components", "attachments"):
            if key in body:
                merged[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        if is_empty(merged, 0):
            raise empty_message()
        if "content" in body:
            msg.wire["content"] = "" if body["content"] is None else str(body["content"])
            users, roles, everyone = resolve_mentions(
                msg.wire["content"], body.get("allowed_mentions", msg.meta.get("allowed_mentions")), can_mention_everyone=True
            )
            msg.wire["mentions"] = [self._user(u) for u in users if u in self.users]
            msg.wire["mention_roles"] = [str(r) for r in roles]
            msg.wire["mention_everyone"] = everyone
        if "embeds" in body:
            msg.wire["embeds"] = [self._normalize_embed(e) for e in body["embeds"] or []]
        if "components" in body:
            msg.wire["components"] = copy.deepcopy(body["components"] or [])
        if "attachments" in body and body["attachments"] is not None:
            keep = {str(a.get("id")) for a in body["attachments"]}
            msg.wire["attachments"] = [a for a in msg.wire["attachments"] if a["id"] in keep]
        if "flags" in body and body["flags"] is not None:
            msg.wire["flags"] = (msg.wire["flags"] & ~_SETTABLE_FLAGS) | (int(body["flags"]) & _SETTABLE_FLAGS)
        if "allowed_mentions" in body:
            msg.meta["allowed_mentions"] = copy.deepcopy(body["allowed_mentions"])
        if clear_loading:
            msg.wire["flags"] &= ~MSG_FLAG_LOADING
        if mark_edited:
            msg.wire["edited_timestamp"] = _iso()
        if not msg.ephemeral and msg.channel_id in self.channels:
            self._emit_message("MESSAGE_UPDATE", msg, self.channels[msg.channel_id])
        self._notify()

    async def _h_edit_message(self, req: _Req) -> Any:
        ch = self._channel(req.params["channel_id"])
        self._need(ch, 0, access=True)
        msg = self._message_in(ch, req.params["message_id"])
        if msg.wire["author"]["id"] != str(self.bot_user_id) or msg.meta["via"] != "bot":
            raise ApiError(403, discord_error(50005, "Cannot edit a message authored by another user"))
        body = self._body(req)
        if body.get("embeds") and not self.permissions_for(ch["id"]) & P.EMBED_LINKS:  # type: ignore[attr-defined]
            raise ApiError(403, discord_error(50013, "Missing Permissions"))
        self._apply_edit(msg, body)
        return self._public(msg)

    def _delete(self, msg: _Msg) -> None:
        msg.deleted = True
        ch = self.channels.get(msg.channel_id)
        if ch is not None and not msg.ephemeral:
            self._emit("MESSAGE_DELETE", {"id": str(msg.id), "channel_id": str(ch["id"]), "guild_id": str(ch["guild_id"])})
        self._notify()

    async def _h_delete_message(self, req: _Req) -> Any:
        ch = self._channel(req.params["channel_id"])
        self._need(ch, 0, access=True)
        msg = self._message_in(ch, req.params["message_id"])
        own = msg.wire["author"]["id"] == str(self.bot_user_id) and msg.meta["via"] == "bot"
        if not own:
            self._need(ch, P.MANAGE_MESSAGES)  # type: ignore[attr-defined]
        self._delete(msg)
        return 204, None

    async def _h_crosspost(self, req: _Req) -> Any:
        ch = self._channel(req.params["channel_id"])
        self._need(ch, 0, access=True)
        if ch["type"] != 5:
            raise ApiError(400, discord_error(50024, "Cannot execute action on this channel type"))
        msg = self._message_in(ch, req.params["message_id"])
        own = msg.wire["author"]["id"] == str(self.bot_user_id)
        self._need(ch, P.SEND_MESSAGES if own else P.MANAGE_MESSAGES)  # type: ignore[attr-defined]
        if msg.wire["flags"] & MSG_FLAG_CROSSPOSTED:
            raise ApiError(400, discord_error(40033, "This message has already been crossposted."))
        msg.wire["flags"] |= MSG_FLAG_CROSSPOSTED
        self._notify()
        return self._public(msg)

    async def _h_typing(self, req: _Req) -> Any:
        ch = self._channel(req.params["channel_id"])
        self._need(ch, self._send_bit(ch))
        return 204, None

    # ---- threads
    def _thread_errors(self, body: Dict[str, Any]) -> FormErrors:
        errors = FormErrors()
        check_thread_name(errors, ("name",), body.get("name"))
        dur = body.get("auto_archive_duration")
        if dur is not None and dur not in L.THREAD_AUTO_ARCHIVE_DURATIONS:
            errors.add(("auto_archive_duration",), "BASE_TYPE_CHOICES", f"Value must be one of {L.THREAD_AUTO_ARCHIVE_DURATIONS}.")
        return errors

    def _make_thread(self, parent: Dict[str, Any], body: Dict[str, Any], ttype: int, *, thread_id: Optional[int] = None) -> Dict[str, Any]:
        tid = thread_id or self._snowflake()
        th = self._new_thread_state(tid, parent, str(body["name"]), ttype, owner_id=self.bot_user_id)
        if body.get("auto_archive_duration"):
            th["auto_archive_duration"] = body["auto_archive_duration"]
        if body.get("rate_limit_per_user"):
            th["rate_limit_per_user"] = body["rate_limit_per_user"]
        if body.get("applied_tags"):
            th["applied_tags"] = [int(t) for t in body["applied_tags"]]
        self.channels[tid] = th
        return th

    def _thread_response(self, th: Dict[str, Any]) -> Dict[str, Any]:
        wire = self._channel_wire_from(th)
        wire["member"] = {"id": str(th["id"]), "user_id": str(self.bot_user_id), "join_timestamp": _iso(), "flags": 0}
        return wire

    async def _h_post_threads(self, req: _Req) -> Any:
        ch = self._channel(req.params["channel_id"])
        self._need(ch, 0, access=True)
        body = self._body(req)
        if ch["type"] in FORUM_TYPES:
            errors = self._thread_errors(body)
            message = body.get("message")
            if message is None:
                errors.required(("message",))
            elif isinstance(message, dict):
                check_message_fields(errors, ("message",), message)
            else:
                errors.add(("message",), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            errors.raise_if_any()
            if is_empty(message, len(req.files)):
                raise empty_message()
            self._check_files(req.files)
            self._need(ch, self._content_perms(message, req.files, P.SEND_MESSAGES))  # type: ignore[attr-defined]
            return self._forum_post(ch, body, message, req.files, author=self._bot_author())
        if ch["type"] not in TEXT_TYPES:
            raise ApiError(400, discord_error(50024, "Cannot execute action on this channel type"))
        self._thread_errors(body).raise_if_any()
        ttype = int(body.get("type") or 12)
        if ch["type"] == 5:
            ttype = 10
        if ttype not in THREAD_TYPES:
            e = FormErrors()
            e.add(("type",), "BASE_TYPE_CHOICES", "Value must be one of {10, 11, 12}.")
            raise invalid_form_body(e.tree)
        self._need(ch, P.CREATE_PRIVATE_THREADS if ttype == 12 else P.CREATE_PUBLIC_THREADS)  # type: ignore[attr-defined]
        th = self._make_thread(ch, body, ttype)
        self._emit("THREAD_CREATE", dict(self._channel_wire_from(th), newly_created=True))
        self._notify()
        return 201, self._thread_response(th)

    def _forum_post(self, forum: Dict[str, Any], body: Dict[str, Any], message: Dict[str, Any], files: List[Dict[str, Any]], *, author: Dict[str, Any], webhook: Optional[Dict[str, Any]] = None) -> Tuple[int, Dict[str, Any]]:
        tid = self._snowflake()
        th = self._make_thread(forum, body, 11, thread_id=tid)
        if webhook is not None:
            th["owner_id"] = webhook["id"]
        self._emit("THREAD_CREATE", dict(self._channel_wire_from(th), newly_created=True))
        # A forum post's starter message has the thread's id.
        msg = self._create_message(th, message, author=author, files=files, webhook=webhook, message_id=tid)
        th["message_count"] = 0  # the starter message does not count
        forum["last_message_id"] = tid
        wire = self._thread_response(th)
        wire["message"] = self._public(msg)
        return 201, wire

    async def _h_thread_from_message(self, req: _Req) -> Any:
        ch = self._channel(req.params["channel_id"])
        self._need(ch, 0, access=True)
        if ch["type"] not in TEXT_TYPES:
            raise ApiError(400, discord_error(50024, "Cannot execute action on this channel type"))
        msg = self._message_in(ch, req.params["message_id"])
        body = self._body(req)
        self._thread_errors(body).raise_if_any()
        self._need(ch, P.CREATE_PUBLIC_THREADS)  # type: ignore[attr-defined]
        if msg.id in self.channels:
            raise ApiError(400, discord_error(160004, "A thread has already been created for this message"))
        th = self._make_thread(ch, body, 10 if ch["type"] == 5 else 11, thread_id=msg.id)
        msg.wire["flags"] |= MSG_FLAG_HAS_THREAD
        msg.wire["thread"] = self._channel_wire_from(th)
        self._emit("THREAD_CREATE", dict(self._channel_wire_from(th), newly_created=True))
        self._notify()
        return 201, self._thread_response(th)

    # ---- webhooks (incoming)
    async def _h_list_webhooks(self, req: _Req) -> Any:
        ch = self._channel(req.params["channel_id"])
        self._need(ch, P.MANAGE_WEBHOOKS)  # type: ignore[attr-defined]
        return [self._webhook_wire(h) for h in self.webhooks.values() if h["channel_id"] == ch["id"]]

    async def _h_create_webhook(self, req: _Req) -> Any:
        ch = self._channel(req.params["channel_id"])
        self._need(ch, P.MANAGE_WEBHOOKS)  # type: ignore[attr-defined]
        if ch["type"] in THREAD_TYPES or ch["type"] == 4:
            raise ApiError(400, discord_error(50024, "Cannot execute action on this channel type"))
        body = self._body(req)
        errors = FormErrors()
        from .validation import check_username

        if body.get("name") is None:
            errors.required(("name",))
        else:
            check_username(errors, ("name",), body.get("name"))
        errors.raise_if_any()
        hook = self._new_webhook(ch, str(body["name"]))
        return self._webhook_wire(hook)

    def _hook(self, req: _Req) -> Dict[str, Any]:
        try:
            hook = self.webhooks[int(req.params["webhook_id"])]
        except (KeyError, ValueError):
            raise ApiError(404, discord_error(10015, "Unknown Webhook")) from None
        if hook["token"] != req.params["token"]:
            raise ApiError(401, discord_error(50027, "Invalid Webhook Token"))
        return hook

    def _interaction_for_webhook(self, req: _Req) -> Optional[InteractionRecord]:
        if req.params["webhook_id"] != str(self.app_id):
            return None
        rec = self._interactions_by_token.get(req.params["token"])
        now = asyncio.get_running_loop().time()
        if rec is None or rec.response is None or now - rec.created > self.interaction_token_lifetime:
            raise ApiError(404, discord_error(10015, "Unknown Webhook"))
        return rec

    async def _h_get_webhook(self, req: _Req) -> Any:
        # "Get Webhook with Token": no authentication, and no ``user`` in the webhook object; the
        # token is returned (an incoming webhook), ``url`` only comes from the OAuth2 flow
        wire = self._webhook_wire(self._hook(req), with_token=True)
        wire.pop("user", None)
        wire.pop("url", None)
        return wire

    async def _h_delete_webhook(self, req: _Req) -> Any:
        hook = self._hook(req)
        self.webhooks.pop(hook["id"], None)
        return 204, None

    async def _h_execute_webhook(self, req: _Req) -> Any:
        rec = self._interaction_for_webhook(req)
        if rec is not None:
            return await self._followup(req, rec)
        hook = self._hook(req)
        ch = self.channels.get(hook["channel_id"])
        if ch is None:
            raise ApiError(404, discord_error(10015, "Unknown Webhook"))
        body = self._body(req)
        wait = _parse_bool(req.query.get("wait"))
        errors = FormErrors()
        check_message_fields(errors, (), body, webhook=True)
        thread_name = body.get("thread_name")
        if thread_name is not None:
            check_thread_name(errors, ("thread_name",), thread_name)
        errors.raise_if_any()
        if is_empty(body, len(req.files)):
            raise empty_message()
        self._check_files(req.files)
        target = ch
        if req.query.get("thread_id"):
            try:
                target = self.channels[int(req.query["thread_id"])]
            except (KeyError, ValueError):
                raise ApiError(404, discord_error(10003, "Unknown Channel")) from None
            if target["type"] not in THREAD_TYPES or target["parent_id"] != ch["id"]:
                raise ApiError(404, discord_error(10003, "Unknown Channel"))
            self._unarchive_for_send(target)
        elif ch["type"] in FORUM_TYPES:
            if not thread_name:
                raise ApiError(400, discord_error(220001, "Webhooks posted to forum channels must have a thread_name or thread_id"))
            status, wire = self._forum_post(
                ch, {"name": thread_name, "applied_tags": body.get("applied_tags")}, body, req.files,
                author=self._author_for_webhook(hook, body), webhook=hook,
            )
            return wire["message"] if wait else (204, None)
        msg = self._create_message(target, body, author=self._author_for_webhook(hook, body), files=req.files, webhook=hook)
        return self._public(msg) if wait else (204, None)

    async def _h_webhook_message(self, req: _Req) -> Any:
        rec = self._interaction_for_webhook(req)
        mid_param = req.params["message_id"]
        if rec is not None:
            if mid_param == "@original":
                mid = rec.original_message_id
            else:
                try:
                    mid = int(mid_param)
                except ValueError:
                    mid = None
                allowed = {int(f["id"]) for f in rec.followups} | {rec.original_message_id}
                if mid not in allowed:
                    mid = None
            msg = self._message_index.get(mid) if mid is not None else None
        else:
            hook = self._hook(req)
            try:
                msg = self._message_index.get(int(mid_param))
            except ValueError:
                msg = None
            if msg is not None and msg.wire.get("webhook_id") != str(hook["id"]):
                msg = None
        if msg is None or msg.deleted:
            raise ApiError(404, discord_error(10008, "Unknown Message"))
        if req.method == "GET":
            return self._public(msg)
        if req.method == "DELETE":
            self._delete(msg)
            if rec is not None and msg.id == rec.original_message_id:
                rec.original_deleted = True
            return 204, None
        body = self._body(req)
        was_loading = bool(msg.wire["flags"] & MSG_FLAG_LOADING)
        self._apply_edit(msg, body, mark_edited=not was_loading)
        if rec is not None:
            rec.edits.append(copy.deepcopy(body))
            self._notify()
        return self._public(msg)

    # ---- interactions
    def _interaction_channel(self, rec: InteractionRecord) -> Dict[str, Any]:
        ch = self.channels.get(rec.channel_id)
        if ch is None:
            raise ApiError(404, discord_error(10003, "Unknown Channel"))
        return ch

    async def _h_callback(self, req: _Req) -> Any:
        try:
            rec = self.interactions[int(req.params["interaction_id"])]
        except (KeyError, ValueError):
            rec = None
        attempt = {"body": copy.deepcopy(req.json), "status": 0, "error": None, "time": time.time()}
        try:
            if rec is None or rec.token != req.params["token"]:
                raise ApiError(404, discord_error(10062, "Unknown interaction"))
            if rec.response is not None:
                raise ApiError(400, discord_error(40060, "Interaction has already been acknowledged."))
            if asyncio.get_running_loop().time() - rec.created > self.interaction_response_deadline:
                raise ApiError(404, discord_error(10062, "Unknown interaction"))
            result = self._callback(rec, req)
            attempt["status"] = 200 if _parse_bool(req.query.get("with_response")) else 204
            return result if attempt["status"] == 200 else (204, None)
        except ApiError as exc:
            attempt["status"], attempt["error"] = exc.status, exc.body
            raise
        finally:
            if rec is not None:
                rec.callback_attempts.append(attempt)
                self._notify()

    def _callback(self, rec: InteractionRecord, req: _Req) -> Dict[str, Any]:
        body = self._body(req)
        rtype = body.get("type")
        allowed = _ALLOWED_CALLBACKS.get(rec.type, set())
        if rtype not in allowed:
            e = FormErrors()
            e.add(("type",), "BASE_TYPE_CHOICES", f"Value must be one of {sorted(allowed)}.")
            raise invalid_form_body(e.tree)
        data = body.get("data") or {}
        message: Optional[_Msg] = None
        loading = ephemeral = False
        if rtype == 4:
            validate_new_message(data, path=("data",), n_files=len(req.files))
            self._check_files(req.files)
            ephemeral = bool(int(data.get("flags") or 0) & MSG_FLAG_EPHEMERAL)
            message = self._create_message(
                self._interaction_channel(rec), data, author=self._bot_author(), files=req.files,
                interaction=rec, msg_type=20 if rec.type == 2 else 0, ephemeral=ephemeral,
            )
            rec.original_message_id = message.id
        elif rtype == 5:
            ephemeral = bool(int(data.get("flags") or 0) & MSG_FLAG_EPHEMERAL)
            loading = True
            message = self._create_message(
                self._interaction_channel(rec), {"content": ""}, author=self._bot_author(), files=[],
                interaction=rec, msg_type=20 if rec.type == 2 else 0, ephemeral=ephemeral, extra_flags=MSG_FLAG_LOADING,
            )
            rec.original_message_id = message.id
        elif rtype in (6, 7):
            rec.original_message_id = rec.component_message_id
            if rtype == 7:
                target = self._message_index.get(rec.component_message_id or 0)
                if target is None or target.deleted:
                    raise ApiError(404, discord_error(10008, "Unknown Message"))
                self._apply_edit(target, data, path=("data",))
                message = target
        elif rtype == 8:
            self._check_choices(data)
        elif rtype == 9:
            e = FormErrors()
            for key, limit in (("custom_id", L.MAX_CUSTOM_ID_LENGTH), ("title", 45)):
                val = data.get(key)
                if not val:
                    e.required(("data", key))
                elif len(str(val)) > limit:
                    e.max_length(("data", key), limit)
            if not data.get("components"):
                e.required(("data", "components"))
            e.raise_if_any()
        rec.response = copy.deepcopy(body)
        rec.responded_at = asyncio.get_running_loop().time()
        self._notify()
        out: Dict[str, Any] = {
            "interaction": {
                "id": str(rec.id),
                "type": rec.type,
                "activity_instance_id": None,
                "response_message_id": str(message.id) if message is not None else None,
                "response_message_loading": loading,
                "response_message_ephemeral": ephemeral,
            },
            "resource": {"type": rtype},
        }
        if message is not None:
            out["resource"]["message"] = self._public(message)
        return out

    @staticmethod
    def _check_choices(data: Dict[str, Any]) -> None:
        e = FormErrors()
        choices = data.get("choices")
        if choices is None:
            e.required(("data", "choices"))
        elif len(choices) > L.MAX_AUTOCOMPLETE_CHOICES:
            e.max_length(("data", "choices"), L.MAX_AUTOCOMPLETE_CHOICES)
        else:
            for i, choice in enumerate(choices):
                name = str(choice.get("name", ""))
                if not 1 <= len(name) <= L.MAX_CHOICE_NAME:
                    e.bad_length(("data", "choices", i, "name"), 1, L.MAX_CHOICE_NAME)
                value = choice.get("value")
                if isinstance(value, str) and len(value) > L.MAX_CHOICE_STRING_VALUE:
                    e.max_length(("data", "choices", i, "value"), L.MAX_CHOICE_STRING_VALUE)
                elif value is None:
                    e.required(("data", "choices", i, "value"))
        e.raise_if_any()

    async def _followup(self, req: _Req, rec: InteractionRecord) -> Any:
        body = self._body(req)
        errors = FormErrors()
        check_message_fields(errors, (), body)
        errors.raise_if_any()
        if is_empty(body, len(req.files)):
            raise empty_message()
        self._check_files(req.files)
        original = self._message_index.get(rec.original_message_id or 0)
        if original is not None and not original.deleted and original.wire["flags"] & MSG_FLAG_LOADING:
            # After a "thinking" defer, the first followup replaces the loading message.
            self._apply_edit(original, body, mark_edited=False)
            msg = original
        else:
            ephemeral = bool(int(body.get("flags") or 0) & MSG_FLAG_EPHEMERAL)
            msg = self._create_message(
                self._interaction_channel(rec), body, author=self._bot_author(), files=req.files,
                interaction=rec, ephemeral=ephemeral,
            )
        rec.followups.append(self._recorded(msg))
        self._notify()
        return self._public(msg) if _parse_bool(req.query.get("wait", "true")) else (204, None)

    # ================================================================== driving interactions
    def _find_command(self, guild_id: Optional[int], name: str, ctype: int = 1) -> Dict[str, Any]:
        for scope in ((guild_id, None) if guild_id is not None else (None,)):
            for cmd in self._commands.get(scope, []):
                if cmd["name"] == name and cmd["type"] == ctype:
                    return cmd
        synced = {s: [c["name"] for c in cmds] for s, cmds in self._commands.items()}
        raise LookupError(f"command {name!r} was never synced for guild {guild_id} (synced: {synced})")

    def _resolve_subcommand(self, cmd: Dict[str, Any], subcommand: Optional[str]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]], Dict[str, Any]]:
        """-> (outer option chain to nest into, the leaf's option definitions, leaf)."""
        chain: List[Dict[str, Any]] = []
        leaf = cmd
        parts = subcommand.split() if subcommand else []
        has_subs = any(o.get("type") in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP) for o in cmd.get("options") or [])
        if has_subs and not parts:
            raise ValueError(f"/{cmd['name']} has subcommands; pass subcommand=")
        for part in parts:
            found = next((o for o in leaf.get("options") or [] if o["name"] == part and o.get("type") in (1, 2)), None)
            if found is None:
                raise LookupError(f"/{cmd['name']} has no subcommand {part!r}")
            chain.append(found)
            leaf = found
        if leaf.get("type") == OPT_SUB_COMMAND_GROUP:
            raise ValueError("a subcommand group cannot be invoked; name the subcommand too")
        return chain, leaf.get("options") or [], leaf

    def _typed_options(
        self, guild_id: int, defs: List[Dict[str, Any]], values: Dict[str, Any], *, focused: Optional[str], resolved: Dict[str, Any]
    ) -> List[Dict[str, Any]]:
        by_name = {d["name"]: d for d in defs}
        out = []
        for name, value in values.items():
            d = by_name.get(name)
            if d is None:
                raise ValueError(f"option {name!r} does not exist (options: {sorted(by_name)})")
            t = d["type"]
            opt: Dict[str, Any] = {"name": name, "type": t}
            if focused == name:
                if not d.get("autocomplete"):
                    raise ValueError(f"option {name!r} has no autocomplete")
                opt["value"] = str(value)
                opt["focused"] = True
                out.append(opt)
                continue
            if focused is None:
                self._check_option_value(guild_id, d, value)
            if t in (OPT_USER, OPT_CHANNEL, OPT_ROLE, OPT_MENTIONABLE):
                sid = str(int(value))
                opt["value"] = sid
                if focused is None:
                    self._resolve_into(resolved, guild_id, t, int(value))
            elif t == OPT_NUMBER:
                opt["value"] = float(value) if focused is None else value
            else:
                opt["value"] = value
            out.append(opt)
        if focused is None:
            missing = [d["name"] for d in defs if d.get("required") and d["name"] not in values]
            if missing:
                raise ValueError(f"required option(s) missing: {missing} (Discord's client would not send this)")
        elif focused not in values:
            raise ValueError(f"focused option {focused!r} needs a (partial) value")
        return out

    def _check_option_value(self, guild_id: int, d: Dict[str, Any], value: Any) -> None:
        t, name = d["type"], d["name"]
        kinds = {OPT_STRING: (str,), OPT_INTEGER: (int,), OPT_BOOLEAN: (bool,), OPT_NUMBER: (int, float)}
        if t in kinds and (not isinstance(value, kinds[t]) or (t != OPT_BOOLEAN and isinstance(value, bool))):
            raise ValueError(f"option {name!r} needs a {kinds[t][0].__name__}, got {value!r}")
        if d.get("choices") and value not in [c["value"] for c in d["choices"]]:
            raise ValueError(f"option {name!r} must be one of its choices, got {value!r}")
        if t == OPT_STRING:
            if d.get("min_length") is not None and len(value) < d["min_length"]:
                raise ValueError(f"option {name!r} shorter than min_length")
            if len(value) > d.get("max_length", 6000):
                raise ValueError(f"option {name!r} longer than max_length")
        if t in (OPT_INTEGER, OPT_NUMBER):
            if d.get("min_value") is not None and value < d["min_value"]:
                raise ValueError(f"option {name!r} below min_value")
            if d.get("max_value") is not None and value > d["max_value"]:
                raise ValueError(f"option {name!r} above max_value")
        if t == OPT_CHANNEL:
            ch = self.channels.get(int(value))
            if ch is None or ch["guild_id"] != guild_id:
                raise ValueError(f"option {name!r}: channel {value} is not in guild {guild_id}")
            if d.get("channel_types") and ch["type"] not in d["channel_types"]:
                raise ValueError(f"option {name!r}: channel type {ch['type']} not in {d['channel_types']}")

    def _resolve_into(self, resolved: Dict[str, Any], guild_id: int, t: int, oid: int) -> None:
        guild = self.guilds[guild_id]
        if t == OPT_CHANNEL:
            ch = self.channels[oid]
            wire = self._channel_wire_from(ch)
            keep = {"id", "name", "type", "parent_id", "thread_metadata", "guild_id", "owner_id", "member_count",
                    "message_count", "rate_limit_per_user", "topic", "position", "nsfw", "flags", "last_message_id"}
            entry = {k: v for k, v in wire.items() if k in keep}
            entry["permissions"] = str(self.permissions_for(oid, self._current_invoker))
            resolved.setdefault("channels", {})[str(oid)] = entry
        elif t == OPT_ROLE or (t == OPT_MENTIONABLE and oid in guild["roles"]):
            resolved.setdefault("roles", {})[str(oid)] = self._role_wire(guild["roles"][oid])
        else:
            if oid not in self.users:
                raise ValueError(f"unknown user {oid}")
            resolved.setdefault("users", {})[str(oid)] = self._user(oid)
            if oid in guild["members"]:
                member = self._member_wire(guild_id, oid, with_permissions=self._guild_base(guild, oid))
                member.pop("user")
                resolved.setdefault("members", {})[str(oid)] = member

    def _invoker(self, guild_id: int, user_id: Optional[int]) -> int:
        guild = self.guilds[guild_id]
        if user_id is None:
            user_id = next((u for u in guild["members"] if u != self.bot_user_id and u != guild["owner_id"]), None)
        return self.add_member(guild_id, user_id)

    def _base_interaction(self, itype: int, guild_id: int, channel_id: int, user_id: int, member_permissions: PermSpec, locale: str) -> Dict[str, Any]:
        ch = self._channel(channel_id)
        if ch["guild_id"] != guild_id:
            raise ValueError(f"channel {channel_id} is not in guild {guild_id}")
        perms = P.to_bits(member_permissions) if member_permissions is not None else self.permissions_for(channel_id, user_id)
        iid = self._snowflake()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        channel_wire = self._channel_wire_from(ch)
        channel_wire["permissions"] = str(perms)
        return {
            "id": str(iid),
            "application_id": str(self.app_id),
            "type": itype,
            "token": token,
            "version": 1,
            "guild_id": str(guild_id),
            "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
            "channel_id": str(channel_id),
            "channel": channel_wire,
            "member": self._member_wire(guild_id, user_id, with_permissions=perms),
            "app_permissions": str(self.permissions_for(channel_id)),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
            "locale": locale,
            "guild_locale": "en-US",
            "attachment_size_limit": L.ATTACHMENT_SIZE_LIMIT,
        }

    async def _deliver(self, payload: Dict[str, Any], component_message_id: Optional[int] = None) -> InteractionRecord:
        if self.connected_sessions == 0 and not any(not s.invalid for s in self._sessions.values()):
            raise RuntimeError("no gateway session: is the bot connected to the fake?")
        rec = InteractionRecord(self, payload, asyncio.get_running_loop().time())
        rec.component_message_id = component_message_id
        self.interactions[rec.id] = rec
        self._interactions_by_token[rec.token] = rec
        await self._emit("INTERACTION_CREATE", payload)
        return rec

    async def _command_interaction(
        self, itype: int, guild_id: int, channel_id: int, user_id: Optional[int], name: str,
        options: Optional[Dict[str, Any]], subcommand: Optional[str], member_permissions: PermSpec,
        locale: str, focused: Optional[str], bypass_command_permissions: bool,
    ) -> InteractionRecord:
        cmd = self._find_command(guild_id, name)
        user_id = self._invoker(guild_id, user_id)
        self._current_invoker = user_id
        payload = self._base_interaction(itype, guild_id, channel_id, user_id, member_permissions, locale)
        required = cmd.get("default_member_permissions")
        have = int(payload["member"]["permissions"])
        if required is not None and not bypass_command_permissions and not have & P.ADMINISTRATOR:  # type: ignore[attr-defined]
            if have & int(required) != int(required):
                raise PermissionError(
                    f"/{name} needs default_member_permissions={required}; Discord would not show it to this member"
                )
        chain, defs, leaf = self._resolve_subcommand(cmd, subcommand)
        resolved: Dict[str, Any] = {}
        opts = self._typed_options(guild_id, defs, dict(options or {}), focused=focused, resolved=resolved)
        for sub in reversed(chain):
            opts = [{"name": sub["name"], "type": sub["type"], "options": opts}]
        data: Dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": 1}
        if opts:
            data["options"] = opts
        if resolved:
            data["resolved"] = resolved
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        payload["data"] = data
        return await self._deliver(payload)

    async def send_slash_command(
        self,
        guild_id: int,
        channel_id: int,
        user_id: Optional[int] = None,
        name: str = "",
        options: Optional[Dict[str, Any]] = None,
        *,
        subcommand: Optional[str] = None,
        member_permissions: PermSpec = None,
        locale: str = "en-US",
        bypass_command_permissions: bool = False,
    ) -> InteractionRecord:
        """Dispatch a CHAT_INPUT INTERACTION_CREATE for a command the bot synced.

        options: {name: value}; types come from the synced definition (channel/user/role
        values are ids and get ``resolved`` data). subcommand: "add" or "group add".
        member_permissions: the invoker's permissions (default: computed from roles/overwrites).
        Raises LookupError/ValueError/PermissionError for what Discord's client would not send.
        """
        return await self._command_interaction(
            2, guild_id, channel_id, user_id, name, options, subcommand, member_permissions, locale, None,
            bypass_command_permissions,
        )

    async def send_autocomplete(
        self,
        guild_id: int,
        channel_id: int,
        user_id: Optional[int] = None,
        name: str = "",
        options: Optional[Dict[str, Any]] = None,
        *,
        focused: str,
        subcommand: Optional[str] = None,
        member_permissions: PermSpec = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """Dispatch an APPLICATION_COMMAND_AUTOCOMPLETE interaction; ``focused`` names the option being typed."""
        return await self._command_interaction(
            4, guild_id, channel_id, user_id, name, options, subcommand, member_permissions, locale, focused, True,
        )

    def _message_for(self, message: Union[int, str, Dict[str, Any], InteractionRecord]) -> _Msg:
        if isinstance(message, InteractionRecord):
            mid = message.original_message_id
        elif isinstance(message, dict):
            mid = message["id"]
        else:
            mid = message
        msg = self._message_index.get(int(mid)) if mid is not None else None
        if msg is None or msg.deleted:
            raise LookupError(f"no such message {mid}")
        return msg

    @staticmethod
    def _find_component(components: List[Dict[str, Any]], custom_id: str) -> Optional[Dict[str, Any]]:
        for comp in components:
            if comp.get("custom_id") == custom_id:
                return comp
            for key in ("components",):
                found = FakeDiscord._find_component(comp.get(key) or [], custom_id)
                if found is not None:
                    return found
            if isinstance(comp.get("accessory"), dict) and comp["accessory"].get("custom_id") == custom_id:
                return comp["accessory"]
        return None

    async def _component(self, message: Any, custom_id: str, user_id: Optional[int], values: Optional[List[str]], member_permissions: PermSpec, locale: str) -> InteractionRecord:
        msg = self._message_for(message)
        comp = self._find_component(msg.wire.get("components") or [], custom_id)
        if comp is None:
            raise LookupError(f"message {msg.id} has no component with custom_id {custom_id!r}")
        if comp.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled; Discord would not send this click")
        ch = self.channels[msg.channel_id]
        guild_id = ch["guild_id"]
        user_id = self._invoker(guild_id, user_id)
        self._current_invoker = user_id
        payload = self._base_interaction(3, guild_id, ch["id"], user_id, member_permissions, locale)
        data: Dict[str, Any] = {"custom_id": custom_id, "component_type": comp["type"]}
        if comp["type"] != 2:
            if values is None:
                raise ValueError("select menus need values=")
            data["values"] = [str(v) for v in values]
        payload["data"] = data
        payload["message"] = self._public(msg)
        return await self._deliver(payload, component_message_id=msg.id)

    async def press_button(
        self,
        message: Union[int, Dict[str, Any], InteractionRecord],
        custom_id: str,
        user_id: Optional[int] = None,
        *,
        member_permissions: PermSpec = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """Click a button on a message (id, message dict, or an InteractionRecord's original response)."""
        return await self._component(message, custom_id, user_id, None, member_permissions, locale)

    async def select_menu(
        self,
        message: Union[int, Dict[str, Any], InteractionRecord],
        custom_id: str,
        values: List[str],
        user_id: Optional[int] = None,
        *,
        member_permissions: PermSpec = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """Choose ``values`` in a select menu on a message."""
        return await self._component(message, custom_id, user_id, list(values), member_permissions, locale)
