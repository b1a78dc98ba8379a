"""What the fake records: HTTP requests and interactions."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .server import FakeDiscord


@dataclass
class RecordedRequest:
    """One HTTP request the fake answered (Authorization header removed)."""

    method: str
    path: str  # path below the API base, e.g. "/channels/123/messages"
    query: Dict[str, str]
    headers: Dict[str, str]
    time: float  # time.time() when it arrived
    route: Optional[str] = None  # matched template, e.g. "/channels/{channel_id}/messages"; None if unknown
    json: Any = None  # parsed JSON body (or payload_json of a multipart body)
    files: List[Dict[str, Any]] = field(default_factory=list)  # [{"name", "filename", "size", "content_type"}]
    status: int = 0
    response: Any = None  # the JSON (or text) answered
    authorized: Optional[bool] = None  # None: route needs no bot token

    def matches(self, method: Optional[str] = None, route: Optional[str] = None) -> bool:
        return (method is None or method.upper() == self.method) and (
            route is None or route == self.route or route == self.path
        )


class InteractionFailed(AssertionError):
    """The bot's interaction callback was rejected by the fake (late, duplicate, invalid...)."""


class InteractionRecord:
    """An interaction the fake dispatched, and everything the bot did with it."""

    def __init__(self, fake: "FakeDiscord", payload: Dict[str, Any], created: float):
        self._fake = fake
        self.payload: Dict[str, Any] = payload  # the INTERACTION_CREATE data as dispatched
        self.id: int = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.guild_id: Optional[int] = int(payload["guild_id"]) if payload.get("guild_id") else None
        self.channel_id: int = int(payload["channel_id"])
        self.user_id: int = int((payload.get("member") or {}).get("user", payload.get("user", {}))["id"])
        self.created: float = created  # loop.time()
        self.response: Optional[Dict[str, Any]] = None  # accepted callback body {"type": .., "data": ..}
        self.responded_at: Optional[float] = None
        self.callback_attempts: List[Dict[str, Any]] = []  # every POST .../callback: {"body", "status", "error"}
        self.followups: List[Dict[str, Any]] = []  # message objects created by followups
        self.edits: List[Dict[str, Any]] = []  # bodies of PATCH .../messages/@original or /{id}
        self.original_message_id: Optional[int] = None
        self.original_deleted: bool = False
        self.component_message_id: Optional[int] = None  # for component interactions

    def __repr__(self) -> str:
        return f"<InteractionRecord id={self.id} type={self.type} response_type={self.response_type}>"

    @property
    def data(self) -> Dict[str, Any]:
        return self.payload.get("data", {})

    @property
    def response_type(self) -> Optional[int]:
        return None if self.response is None else self.response.get("type")

    @property
    def response_data(self) -> Dict[str, Any]:
        return {} if self.response is None else (self.response.get("data") or {})

    @property
    def responded(self) -> bool:
        return self.response is not None

    @property
    def ephemeral(self) -> bool:
        return bool(self.response_data.get("flags", 0) & 64)

    @property
    def original(self) -> Optional[Dict[str, Any]]:
        """The current state of the original response message (None if there is none)."""
        if self.original_message_id is None or self.original_deleted:
            return None
        return self._fake.get_message(self.original_message_id)

    def rejected(self) -> List[Dict[str, Any]]:
        return [a for a in self.callback_attempts if a["status"] >= 400]

    async def wait_response(self, timeout: float = 5.0) -> Dict[str, Any]:
        """Wait for the bot's initial callback; returns {"type": .., "data": ..}.

        Raises InteractionFailed if the fake rejected the callback (e.g. it came after
        the 3 s deadline), and TimeoutError if the bot never answered.
        """
        await self._fake.wait_until(
            lambda: self.response is not None or self.rejected(),
            timeout=timeout,
            what=f"a callback for interaction {self.id}",
        )
        if self.response is None:
            attempt = self.rejected()[0]
            raise InteractionFailed(f"interaction callback rejected: {attempt['status']} {attempt['error']}")
        return copy.deepcopy(self.response)

    async def wait_followups(self, n: int = 1, timeout: float = 5.0) -> List[Dict[str, Any]]:
        await self._fake.wait_until(
            lambda: len(self.followups) >= n, timeout=timeout, what=f"{n} followup(s) to interaction {self.id}"
        )
        return copy.deepcopy(self.followups)

    async def wait_edits(self, n: int = 1, timeout: float = 5.0) -> List[Dict[str, Any]]:
        await self._fake.wait_until(
            lambda: len(self.edits) >= n, timeout=timeout, what=f"{n} edit(s) of interaction {self.id}"
        )
        return copy.deepcopy(self.edits)
