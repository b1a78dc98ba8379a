"""The operations HTTP server: ``/healthz`` and ``/metrics``, off unless ``[http] listen`` is set.

``/healthz`` answers 200 with a JSON report when the storage answers, the scheduler finished a
poll cycle recently and (unless this is a dry run) the Discord gateway is connected; otherwise
503 with the same report and a ``reason``. ``/metrics`` is Prometheus' text format.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.config import Config
from bot.errors import HeraldError
from bot.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from bot.app import Herald

log = logging.getLogger("herald.ops")

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
STORAGE_TIMEOUT = 5.0
# The poller sleeps at most this long between cycles (bot/pipeline.py, Poller.run).
POLLER_MAX_SLEEP = 30.0


def scheduler_bound(config: Config) -> float:
    """How long the scheduler may go without finishing a poll cycle before ``/healthz`` fails:
    its longest sleep plus twice what one claimed feed may take (the poller's lease,
    3 × ``[polling] timeout`` + 60 s). 4.5 minutes with the default 20 s timeout."""
    lease = config.polling.timeout * 3 + 60
    return POLLER_MAX_SLEEP + 2 * lease


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``"0.0.0.0:0"`` or ``"[::]:8080"`` → (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)  # nosec B104 # all interfaces only when [http] listen names no host


class OpsServer:
    """Serves ``/healthz`` and ``/metrics`` for one Herald (and its bot, when not a dry run)."""

    def __init__(self, herald: "Herald", listen: str, *, bot: Any = None, metrics: Metrics | None = None) -> None:
        self.herald = herald
        self.listen = listen
        self.bot = bot
        self.metrics = metrics if metrics is not None else herald.metrics
        self.bound = scheduler_bound(herald.config)
        self._runner: web.AppRunner | None = None
        self._started_at = 0.0
        self.host, self.port = split_listen(listen)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else (f"[{self.host}]" if ":" in self.host else self.host)  # nosec B104 # a comparison for a display URL, not a bind
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(HEALTH_PATH, self._healthz)
        app.router.add_get(METRICS_PATH, self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
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

    async def __aenter__(self) -> "OpsServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- health ---------------------------------------------------------------------------------

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """The checks behind ``/healthz``: (healthy, report)."""
        checks: dict[str, dict[str, Any]] = {}
        checks["storage"] = await self._check_storage()
        checks["scheduler"] = self._check_scheduler()
        if self.bot is not None:
            checks["gateway"] = self._check_gateway()
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

    def _check_gateway(self) -> dict[str, Any]:
        bot = self.bot
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

    async def _healthz(self, _request: web.Request) -> web.Response:
        ok, report = await self.health()
        if not ok:
            log.debug("health check failed: %s", report.get("reason"))
        return web.json_response(report, status=200 if ok else 503)

    # --- metrics --------------------------------------------------------------------------------

    async def _metrics(self, _request: web.Request) -> web.Response:
        if self.metrics is None:
            return web.Response(status=404, text="metrics are not enabled in this process\n")
        connected = latency = None
        if self.bot is not None:
            connected = self._check_gateway()["ok"]
            latency = self.bot.latency if connected else None
        await self.metrics.refresh(
            storage=self.herald.storage, last_cycle=self.herald.poller.last_cycle, gateway_connected=connected,
            gateway_latency=latency, sink_rate_limited=getattr(self.herald.sink, "rate_limited", None),
        )
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def start_ops(config: Config, herald: "Herald", *, bot: Any = None) -> OpsServer | None:
    """Starts the ops server when ``[http] listen`` (or ``$HERALD_HTTP_LISTEN``) is set."""
    if not config.http.listen:
        return None
    server = OpsServer(herald, config.http.listen, bot=bot, metrics=getattr(bot, "metrics", None) or herald.metrics)
    await server.start()
    return server
