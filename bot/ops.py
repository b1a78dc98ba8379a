"""The operations HTTP server: ``/healthz`` and ``/metrics``, off unless ``[http] listen`` is set.

``/healthz`` answers 200 with a JSON report when the storage answers, the scheduler finished a
poll cycle recently and (unless this is a dry run) the Discord gateway is connected; otherwise
503 with the same report and a ``reason``. ``/metrics`` is Prometheus' text format.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.config import Config
from bot.errors import HeraldError
from bot.metrics import CONTENT_TYPE, Metrics
from bot.pipeline import POLLER_MAX_SLEEP, feed_lease

if TYPE_CHECKING:
    import discord

    from bot.app import Herald

    # logging.LoggerAdapter is generic for type checkers only (not subscriptable at run time on 3.10).
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:
    _LoggerAdapter = logging.LoggerAdapter

_Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

log = logging.getLogger("herald.ops")

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
STORAGE_TIMEOUT = 5.0
# Requests to this server are a few hundred bytes: a longer request line or header line is
# refused with a 4xx. A client has this long to send a whole request head (a connection that
# sends half a header and waits is closed), and an idle keep-alive connection is closed after it.
MAX_HEADER_LINE = 8190
HEADER_TIMEOUT = 5.0
KEEPALIVE_TIMEOUT = 5.0
# A refused request is logged on one line, once per this many seconds at most (with a count).
REFUSED_LOG_INTERVAL = 60.0


def scheduler_bound(config: Config) -> float:
    """How long the scheduler may go without finishing a poll cycle before ``/healthz`` fails:
    its longest sleep plus twice what one claimed feed may take (the poller's lease,
    3 × ``[polling] timeout`` + 60 s + 3 × ``parse_timeout``). 5 minutes with the defaults."""
    return POLLER_MAX_SLEEP + 2 * feed_lease(config.polling)


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``"0.0.0.0:0"`` or ``"[::]:8080"`` → (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)  # nosec B104 # all interfaces only when [http] listen names no host


class OpsServer:
    """Serves ``/healthz`` and ``/metrics`` for one Herald (and its bot, when not a dry run)."""

    def __init__(
        self, herald: Herald, listen: str, *, bot: discord.Client | None = None, metrics: Metrics | None = None,
    ) -> None:
        self.herald = herald
        self.listen = listen
        self.bot = bot
        self.metrics = metrics if metrics is not None else _scraped(herald.metrics)
        self.bound = scheduler_bound(herald.config)
        self._runner: web.BaseRunner | None = None
        self._http: _HttpServer | None = None
        self._started_at = 0.0
        self.host, self.port = split_listen(listen)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else (f"[{self.host}]" if ":" in self.host else self.host)  # nosec B104 # a comparison for a display URL, not a bind
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._http = _HttpServer(
            self._dispatch, header_timeout=HEADER_TIMEOUT, access_log=None, logger=_ServerLog(log),
            max_line_size=MAX_HEADER_LINE, max_field_size=MAX_HEADER_LINE, keepalive_timeout=KEEPALIVE_TIMEOUT,
        )
        runner = web.ServerRunner(self._http, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise HeraldError(f"[http] listen = {self.listen!r}: cannot listen there: {exc.strerror or exc}") from None
        self._runner = runner
        self._started_at = self.herald.clock()
        addresses = runner.addresses
        if addresses:
            self.port = int(addresses[0][1])  # the real port when the config asked for port 0
        log.info("ops server listening on %s (%s, %s)", self.url, HEALTH_PATH, METRICS_PATH)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> OpsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        route = {HEALTH_PATH: self._healthz, METRICS_PATH: self._metrics}.get(request.path)
        if route is None:
            return web.Response(status=404, text=f"not found; this server answers {HEALTH_PATH} and {METRICS_PATH}\n")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"}, text="only GET and HEAD\n")
        return await route(request)

    # --- health ---------------------------------------------------------------------------------

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """The checks behind ``/healthz``: (healthy, report)."""
        checks: dict[str, dict[str, Any]] = {}
        checks["storage"] = await self._check_storage()
        checks["scheduler"] = self._check_scheduler()
        if self.bot is not None:
            checks["gateway"] = self._check_gateway(self.bot)
        failed = [f"{name}: {c['error']}" for name, c in checks.items() if not c["ok"]]
        report: dict[str, Any] = {"status": "ok" if not failed else "unhealthy", "checks": checks}
        if failed:
            report["reason"] = "; ".join(failed)
        return not failed, report

    async def _check_storage(self) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self.herald.storage.ping(), STORAGE_TIMEOUT)
        except asyncio.TimeoutError:
            return {"ok": False, "error": f"the database did not answer within {STORAGE_TIMEOUT:g}s"}
        except Exception as exc:
            return {"ok": False, "error": f"the database does not answer: {exc or type(exc).__name__}"}
        return {"ok": True}

    def _check_scheduler(self) -> dict[str, Any]:
        now = self.herald.clock()
        last = self.herald.poller.last_cycle
        out: dict[str, Any] = {"bound_seconds": self.bound}
        if last is None:
            waited = now - self._started_at
            out["last_cycle_age_seconds"] = None
            if waited > self.bound:
                return dict(out, ok=False, error=f"no poll cycle finished in the {waited:.0f}s since start "
                                                 f"(limit {self.bound:.0f}s)")
            return dict(out, ok=True)
        age = max(0.0, now - last)
        out["last_cycle_age_seconds"] = round(age, 3)
        if age > self.bound:
            return dict(out, ok=False, error=f"the last poll cycle finished {age:.0f}s ago (limit {self.bound:.0f}s)")
        return dict(out, ok=True)

    def _check_gateway(self, bot: discord.Client) -> dict[str, Any]:
        if bot.is_closed():
            return {"ok": False, "error": "the bot is shut down"}
        if not bot.is_ready():
            return {"ok": False, "error": "not connected to the Discord gateway yet"}
        ws = getattr(bot, "ws", None)
        socket = getattr(ws, "socket", None)
        if ws is None or socket is None or socket.closed:
            return {"ok": False, "error": "the Discord gateway connection is down (reconnecting)"}
        latency = bot.latency
        if not math.isfinite(latency):
            return {"ok": False, "error": "the Discord gateway has not answered a heartbeat"}
        return {"ok": True, "latency_seconds": round(latency, 4)}

    async def _healthz(self, _request: web.BaseRequest) -> web.Response:
        ok, report = await self.health()
        if not ok:
            log.debug("health check failed: %s", report.get("reason"))
        return web.json_response(report, status=200 if ok else 503)

    # --- metrics --------------------------------------------------------------------------------

    async def _metrics(self, _request: web.BaseRequest) -> web.Response:
        if self.metrics is None:
            return web.Response(status=404, text="metrics are not enabled in this process\n")
        connected = latency = None
        if self.bot is not None:
            connected = self._check_gateway(self.bot)["ok"]
            latency = self.bot.latency if connected else None
        await self.metrics.refresh(
            storage=self.herald.storage, last_cycle=self.herald.poller.last_cycle, gateway_connected=connected,
            gateway_latency=latency, sink_rate_limited=getattr(self.herald.sink, "rate_limited", None),
        )
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


def _scraped(metrics: object) -> Metrics | None:
    """The metrics ``/metrics`` serves: Herald's Prometheus :class:`Metrics` (any other
    :class:`~bot.counters.Counters`, such as ``NoCounters``, has nothing to serve)."""
    return metrics if isinstance(metrics, Metrics) else None


class _HttpServer(web.Server):
    """aiohttp's low-level server, plus a deadline for the request head: a connection that has
    not sent a whole request line and headers ``header_timeout`` seconds after it opened is
    closed (aiohttp itself waits for a first request as long as its keep-alive allows, or
    forever in some versions). ``handler`` is called once the head has arrived."""

    def __init__(self, handler: _Handler, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(self._head_received_then, **kwargs)
        self._handler = handler
        self.header_timeout = header_timeout
        self._deadlines: dict[web.RequestHandler, asyncio.TimerHandle] = {}

    async def _head_received_then(self, request: web.BaseRequest) -> web.StreamResponse:
        self.head_received(request.protocol)
        return await self._handler(request)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        loop = asyncio.get_running_loop()
        self._deadlines[handler] = loop.call_later(self.header_timeout, self._too_slow, handler, transport)

    def connection_lost(self, handler: web.RequestHandler, exc: BaseException | None = None) -> None:
        timer = self._deadlines.pop(handler, None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(handler, exc)

    def head_received(self, handler: web.RequestHandler) -> None:
        """A whole request head arrived on this connection: from now on aiohttp's keep-alive timeout applies."""
        timer = self._deadlines.pop(handler, None)
        if timer is not None:
            timer.cancel()

    def _too_slow(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        self._deadlines.pop(handler, None)
        log.debug("ops server: closed a connection that sent no complete request within %gs", self.header_timeout)
        transport.abort()


class _ServerLog(_LoggerAdapter):
    """The logger aiohttp's server writes to. A request refused as malformed or oversized (the
    client's fault) is one line, at most once per :data:`REFUSED_LOG_INTERVAL`, without a
    traceback or any of the request's bytes; an error in Herald's own handlers keeps its traceback."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self._last = -math.inf
        self._quiet = 0

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            self._refused(exc)
            return
        self.logger.error(msg, *args, exc_info=exc_info, **kwargs)

    def _refused(self, exc: HttpProcessingError) -> None:
        now = time.monotonic()
        if now - self._last < REFUSED_LOG_INTERVAL:
            self._quiet += 1
            return
        more = f"; {self._quiet} more since the last such warning" if self._quiet else ""
        self._last, self._quiet = now, 0
        self.logger.warning("ops server: refused a malformed or oversized request (%s, HTTP %s)%s",
                            type(exc).__name__, exc.code or 400, more)


async def start_ops(config: Config, herald: Herald, *, bot: discord.Client | None = None) -> OpsServer | None:
    """Starts the ops server when ``[http] listen`` (or ``$HERALD_HTTP_LISTEN``) is set. It serves
    the bot's metrics (which count its Discord requests too) when the bot has them, else the Herald's."""
    if not config.http.listen:
        return None
    server = OpsServer(herald, config.http.listen, bot=bot, metrics=_scraped(getattr(bot, "metrics", None)))
    await server.start()
    return server
