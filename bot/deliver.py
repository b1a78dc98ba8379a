"""The delivery half of the pipeline: render → deliver, from the outbox in storage.

Rows in ``deliveries`` are written with the entries (see SqlStorage.apply_polls).
A worker per target sends them oldest first, and marks one delivered only
after the sink confirmed it. A crash between send and record resends with the
same nonce, which Discord deduplicates (``enforce_nonce``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from typing import Any, Awaitable, Callable, Protocol, TextIO
from urllib.parse import urlsplit

from bot.counters import Counters, NoCounters
from bot.errors import PermanentDeliveryError, StorageError, TransientDeliveryError
from bot import limits
from bot.limits import NONCE_LENGTH
from bot.logs import get_logger, log_fields, redact
from bot.models import MessageDefaults, Subscription
from bot.render import render_digest, render_entry
from bot.schedule import delivery_backoff
from bot.storage.base import ClaimedDelivery, Storage

log = get_logger("herald.deliver")


def nonce_for(target: str, kind: str, entry_ids: tuple[int, ...]) -> str:
    """A stable nonce for one announcement in one target (≤ 25 characters)."""
    digest = hashlib.sha256(f"{target}|{kind}|{','.join(map(str, entry_ids))}".encode()).hexdigest()
    return digest[:NONCE_LENGTH]


def render_claimed(claimed: ClaimedDelivery, defaults: MessageDefaults | None = None) -> dict[str, Any]:
    """The message for one delivery; the subscription's unset message options come from ``defaults``."""
    sub = claimed.subscription.with_defaults(defaults or MessageDefaults())
    if claimed.delivery.kind == "digest":
        return render_digest(claimed.entries, claimed.feed_title, sub)
    return render_entry(claimed.entries[0], claimed.feed_title, sub)


# --- the requests that carry a message (the Discord sink sends these; --json prints them) ---


def channel_message_body(payload: dict[str, Any], nonce: str) -> dict[str, Any]:
    """The body of ``POST /channels/{id}/messages``: the message, with its nonce enforced."""
    return dict(payload, nonce=nonce, enforce_nonce=True)


def webhook_body(payload: dict[str, Any], sub: Subscription) -> dict[str, Any]:
    """The body of ``POST /webhooks/{id}/{token}``: the message, with the subscription's name and avatar."""
    body = dict(payload)
    if sub.username:
        body["username"] = sub.username[: limits.WEBHOOK_USERNAME]
    if sub.avatar_url:
        body["avatar_url"] = sub.avatar_url
    return body


WEBHOOK_QUERY = "wait=true"  # Discord answers with the message (its id) instead of 204


def webhook_endpoint(env: str) -> str:
    """``POST /webhooks/{id}/{token}?wait=true`` for the webhook URL in ``$env``, its token
    replaced by "<token>" (it is a secret); says so when the variable is not set."""
    url = os.environ.get(env, "").strip()
    if not url:
        return f"POST ${env} (not set)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"POST ${env} (not a valid URL)"
    segments = parts.path.rstrip("/").split("/")
    if len(segments) > 1:  # /api/webhooks/{id}/{token}: the token is the last segment
        segments[-1] = "<token>"
    query = f"{parts.query}&{WEBHOOK_QUERY}" if parts.query else WEBHOOK_QUERY  # as the sink appends it
    return f"POST {'/'.join(segments)}?{query}"


def request_for(claimed: ClaimedDelivery, payload: dict[str, Any], nonce: str) -> tuple[str, dict[str, Any]]:
    """(endpoint, body) of the request that delivers ``payload`` to the claimed delivery's target:
    exactly what :class:`bot.discord_sink.DiscordSink` sends to a webhook or a text channel (a
    forum channel gets ``POST /channels/{id}/threads`` with ``{"name", "message": payload}``)."""
    sub = claimed.subscription
    if sub.webhook_env:
        return webhook_endpoint(sub.webhook_env), webhook_body(payload, sub)
    return f"POST /channels/{sub.channel_id}/messages", channel_message_body(payload, nonce)


class Sink(Protocol):
    async def send(self, claimed: ClaimedDelivery, payload: dict[str, Any], nonce: str) -> str | None:
        """Delivers one message; returns its id. Raises TransientDeliveryError or PermanentDeliveryError."""
        ...


class ConsoleSink:
    """``--dry-run``: prints announcements instead of sending them."""

    def __init__(self, out: TextIO | None = None, *, as_json: bool = False) -> None:
        self.out = out or sys.stdout
        self.as_json = as_json
        self.count = 0

    async def send(self, claimed: ClaimedDelivery, payload: dict[str, Any], nonce: str) -> str | None:
        sub = claimed.subscription
        self.count += 1
        entry_id = ",".join(_plain_key(e.key) for e in claimed.entries) if claimed.delivery.kind == "entry" \
            else "digest:" + ",".join(_plain_key(e.key) for e in claimed.entries)
        if self.as_json:
            endpoint, body = request_for(claimed, payload, nonce)
            line = {
                "feed": (claimed.entries[0].feed_name if claimed.entries else None) or claimed.feed_title,
                "channel_id": str(sub.channel_id) if sub.channel_id is not None else None,
                "entry_id": entry_id,
                "endpoint": endpoint,
                "payload": body,
            }
            if sub.webhook_env:
                line["webhook"] = sub.webhook_env
            self.out.write(json.dumps(line, ensure_ascii=False) + "\n")
        else:
            self.out.write(_human(claimed, payload) + "\n")
        self.out.flush()
        return f"dry-run-{self.count}"


def _plain_key(key: str) -> str:
    return key.split(":", 1)[1] if ":" in key else key


def _log_fields(claimed: ClaimedDelivery) -> dict[str, Any]:
    """The fields of log lines about one delivery (bound with :func:`bot.logs.log_fields`, beside
    the target's): the JSON log gets feed, entry and delivery fields."""
    feed = (claimed.entries[0].feed_name if claimed.entries else None) or claimed.feed_title
    keys = [_plain_key(e.key) for e in claimed.entries]
    entry = ",".join(keys[:5]) + (f",+{len(keys) - 5} more" if len(keys) > 5 else "")
    return {"feed": feed, "entry": entry, "delivery": claimed.delivery.id}


def _human(claimed: ClaimedDelivery, payload: dict[str, Any]) -> str:
    embed = payload["embeds"][0]
    lines = [f"── {claimed.feed_title or 'feed'} → {claimed.subscription.target}"]
    if payload.get("content"):
        lines.append(payload["content"])
    lines.append(f"# {embed.get('title', '')}")
    if embed.get("url"):
        lines.append(embed["url"])
    meta = " · ".join(x for x in (embed.get("author", {}).get("name"), embed.get("timestamp")) if x)
    if meta:
        lines.append(meta)
    if embed.get("description"):
        lines.append("")
        lines.append(embed["description"])
    if embed.get("image"):
        lines.append(f"[image] {embed['image']['url']}")
    if embed.get("thumbnail"):
        lines.append(f"[thumbnail] {embed['thumbnail']['url']}")
    return "\n".join(lines) + "\n"


class DeliveryWorker:
    """Sends the outbox: one task per target, in order, with retries; supervised by ``run``."""

    def __init__(
        self, storage: Storage, sink: Sink, *, clock: Callable[[], float] = time.time, lease: float = 120.0,
        on_target_broken: Callable[[str, str], Awaitable[None]] | None = None, metrics: Counters | None = None,
        defaults: MessageDefaults | None = None,
    ) -> None:
        self.storage = storage
        self.defaults = defaults or MessageDefaults()
        self.sink = sink
        self.clock = clock
        self.lease = lease
        self.on_target_broken = on_target_broken
        self.metrics: Counters = metrics or NoCounters()
        self._wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self.sent = 0
        self.failed = 0

    def wake(self) -> None:
        self._wake.set()

    async def deliver_due(self) -> int:
        """Starts a task for each target with something due; waits for all of them. Returns messages sent."""
        before = self.sent
        while True:
            targets = await self.storage.due_targets(self.clock())
            targets = [t for t in targets if t not in self._tasks]
            if not targets:
                break
            for t in targets:
                self._tasks[t] = asyncio.create_task(self._target_loop(t), name=f"herald-deliver-{t}")
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)
        return self.sent - before

    async def _target_loop(self, target: str) -> None:
        try:
            with log_fields(target=target):  # every log line about this target names it
                while not self._stopping:  # on shutdown, finish the send in flight and claim no more
                    claimed = await self.storage.claim_delivery(target, self.clock(), self.lease)
                    if claimed is None:
                        return
                    with log_fields(**_log_fields(claimed)):
                        if not await self._deliver_one(target, claimed):
                            return
        except StorageError as exc:
            log.error("storage error while delivering to %s: %s", target, exc)
        finally:
            self._tasks.pop(target, None)

    async def _deliver_one(self, target: str, claimed: ClaimedDelivery) -> bool:
        """Returns True to carry on with the target's next delivery."""
        d = claimed.delivery
        if not claimed.entries:
            await self.storage.mark_failed(d.id, "the entry no longer exists", self.clock())
            return True
        try:
            payload = render_claimed(claimed, self.defaults)
        except Exception as exc:  # a renderer bug must not block the channel forever
            log.exception("could not render delivery %d", d.id)
            await self.storage.mark_failed(d.id, f"render error: {type(exc).__name__}: {exc}", self.clock())
            self.failed += 1
            return True
        nonce = nonce_for(target, d.kind, d.entry_ids)
        started = time.perf_counter()
        try:
            message_id = await self.sink.send(claimed, payload, nonce)
        except TransientDeliveryError as exc:
            delay = delivery_backoff(d.attempts, retry_after=exc.retry_after)
            log.warning("delivery %d to %s failed (attempt %d), retrying in %.1fs: %s", d.id, target, d.attempts,
                        delay, exc)
            await self.storage.retry_later(d.id, self.clock() + delay, str(exc)[:500])
            self.metrics.count("delivery", "retry")
            return False
        except PermanentDeliveryError as exc:
            self.failed += 1
            self.metrics.count("delivery", "failed")
            if exc.target_broken:
                reason = str(exc)[:500]
                log.error("target %s is unusable, pausing it: %s", target, reason)
                await self.storage.mark_failed(d.id, reason, self.clock())
                newly_paused = await self.storage.pause_target(target, reason, self.clock())
                if newly_paused and self.on_target_broken is not None:  # one notice, not one per process or retry
                    try:
                        await self.on_target_broken(target, reason)
                    except Exception:
                        log.exception("could not send the notice for %s", target)
                return False
            log.error("delivery %d to %s was rejected: %s", d.id, target, exc)
            await self.storage.mark_failed(d.id, str(exc)[:1000], self.clock())
            return True
        except Exception as exc:  # a bug in a sink (or a library) must not stall the target silently
            delay = delivery_backoff(d.attempts)
            log.exception("delivery %d to %s failed unexpectedly (attempt %d), retrying in %.1fs", d.id, target,
                          d.attempts, delay)
            await self.storage.retry_later(d.id, self.clock() + delay,
                                           redact(f"internal error: {type(exc).__name__}: {exc}")[:500])
            self.metrics.count("delivery", "retry")
            return False
        except asyncio.CancelledError:
            # shutting down mid-send: hand the delivery back; the nonce makes a resend safe
            await asyncio.shield(self.storage.release(d.id))
            raise
        self.metrics.observe("delivery_seconds", time.perf_counter() - started)
        await self.storage.mark_delivered(d.id, message_id, self.clock())
        log.info("announced %s in %s", claimed.entries[0].title if d.kind == "entry" else "a digest", target)
        self.sent += 1
        self.metrics.count("delivery", "sent")
        return True


    async def run(self, stop: asyncio.Event) -> None:
        """Delivers until ``stop`` is set; wakes on new deliveries or when a retry falls due."""
        while not stop.is_set():
            self._wake.clear()
            try:
                targets = await self.storage.due_targets(self.clock())
                for t in targets:
                    if t not in self._tasks:
                        self._tasks[t] = asyncio.create_task(self._target_loop(t), name=f"herald-deliver-{t}")
                due = await self.storage.next_delivery_time()
            except StorageError as exc:
                log.error("storage error in the delivery loop: %s", exc)
                due = None
            now = self.clock()
            delay = 5.0 if due is None else min(5.0, max(0.05, due - now))
            # wake on stop, on new deliveries, on a target finishing (its next row may be due), or on time
            waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(stop.wait()),
                                                     asyncio.ensure_future(self._wake.wait())]
            waiters.extend(asyncio.shield(task) for task in list(self._tasks.values()))
            try:
                await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def stop(self, timeout: float = 5.0) -> None:
        """Lets in-flight sends finish for up to ``timeout`` seconds, then cancels (handing rows back)."""
        self._stopping = True
        tasks = list(self._tasks.values())
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
