"""JSON logs (Herald's and discord.py's, one object per line, secrets redacted) and a graceful
SIGTERM, with Herald running as a subprocess."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
import warnings
from pathlib import Path

import aiohttp
import pytest

from bot.logs import register_secret, setup_logging
from tests.discord_harness import fake_discord_toml
from tests.fakediscord import FakeDiscord
from tests.feedgen import numbered_items, write_feed

ROOT = Path(__file__).parent.parent
TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"  # shaped like a real token


def json_lines(stderr: str) -> list[dict]:
    records = []
    for line in stderr.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    for r in records:
        assert {"ts", "level", "logger", "message"} <= set(r), r
    return records


async def start_herald(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def stop_with_sigterm(proc: asyncio.subprocess.Process, limit: float = 10.0) -> tuple[float, str, str]:
    """SIGTERM, then the time it took to exit and its output."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.communicate()
        raise AssertionError(f"Herald did not stop within {limit}s of SIGTERM") from None
    return time.monotonic() - started, out.decode(), err.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_healthy(url: str, proc: asyncio.subprocess.Process, timeout: float = 30.0) -> dict:
    """Asks /healthz until it answers 200 (bounded); fails early if Herald exited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            assert proc.returncode is None, "Herald exited before it was healthy"
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return await resp.json()
            except aiohttp.ClientConnectionError:
                pass
            if loop.time() > deadline:
                raise AssertionError(f"{url} not healthy within {timeout}s")
            await asyncio.sleep(0.1)


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The bundled example, copied so its database lands in tmp_path."""
    for name in ("herald.toml", "seed-vsoch.rss.xml"):
        shutil.copy(ROOT / "examples" / name, tmp_path / name)
    return tmp_path / "herald.toml"


async def test_dry_run_json_logs_parse_and_carry_fields(example):
    env = dict(os.environ, DISCORD_TOKEN=TOKEN)
    proc = await start_herald("run", "--dry-run", "--once", "--json", "--log-format", "json", "--config", str(example),
                              env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    out, err = out.decode(), err.decode()
    assert proc.returncode == 0, err
    records = json_lines(err)
    assert any(r["logger"] == "herald.poll" and r.get("feed") == "vsoch" for r in records)
    announced = [r for r in records if r["logger"] == "herald.deliver" and r["message"].startswith("announced")]
    assert len(announced) == 3
    for r in announced:
        assert r["feed"] == "vsoch" and r["target"] == "channel:123456789012345678"
        assert r["entry"].startswith("https://vsoch.github.io/")
    assert len(out.splitlines()) == 3 and all(json.loads(line)["feed"] for line in out.splitlines())
    assert TOKEN not in out + err


async def test_dry_run_loop_serves_health_and_stops_on_sigterm(example):
    port = free_port()
    env = dict(os.environ, HERALD_HTTP_LISTEN=f"127.0.0.1:{port}")
    proc = await start_herald("run", "--dry-run", "--log-format", "json", "--config", str(example), env=env)
    try:
        report = await wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
    except BaseException:
        proc.kill()
        await proc.communicate()
        raise
    assert report["status"] == "ok" and "gateway" not in report["checks"]
    took, _out, err = await stop_with_sigterm(proc)
    assert proc.returncode == 0, err
    assert took < 10
    records = json_lines(err)
    assert any(r["logger"] == "herald.ops" and str(port) in r["message"] for r in records)


async def test_bot_json_logs_include_discord_py_and_sigterm_exits_cleanly(tmp_path):
    async with FakeDiscord(token=TOKEN) as fake:
        guild = fake.add_guild()
        channel = fake.add_channel(guild, "news")
        url = write_feed(tmp_path / "f.xml", numbered_items(2))
        hook = fake.add_webhook(channel)
        cfg = tmp_path / "herald.toml"
        cfg.write_text(fake_discord_toml(fake, tmp_path / 'h.db') + f"""[logging]
format = "json"
[[feeds]]
url = "{url}"
name = "numbers"
channels = [{channel}]
webhooks = ["HERALD_TEST_HOOK"]
backfill = 2
""")
        env = dict(os.environ, HERALD_TEST_TOKEN=TOKEN, HERALD_TEST_HOOK=hook)
        proc = await start_herald("run", "--config", str(cfg), env=env)
        try:
            await fake.wait_for_messages(channel, 4, timeout=60)  # 2 from the bot, 2 through the webhook
            await fake.wait_until(lambda: len([r for r in fake.requests if r.method == "POST"]) >= 4, timeout=10)
        except BaseException:
            proc.kill()
            await proc.communicate()
            raise
        took, out, err = await stop_with_sigterm(proc)
    assert proc.returncode == 0, err[-3000:]
    assert took < 10
    records = json_lines(err)
    loggers = {r["logger"] for r in records}
    assert any(name.startswith("discord.") for name in loggers), loggers  # discord.py's own lines, same handler
    announced = [r for r in records if r["message"].startswith("announced")]
    assert {r["target"] for r in announced} == {f"channel:{channel}", "webhook:HERALD_TEST_HOOK"}
    assert all(r["feed"] and r["entry"] for r in announced)
    webhook_token = hook.rsplit("/", 1)[1]
    assert TOKEN not in out + err and webhook_token not in out + err


def test_json_formatter_redacts_and_routes_warnings():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("info", "json", stream=stream)
        secret = "webhook-secret-value-0123456789"
        register_secret(secret)
        logging.getLogger("discord.http").warning("retrying with Authorization: Bot %s", TOKEN)
        logging.getLogger("discord.client").info("token is %s", secret, extra={"feed": "f", "entry": "e1"})
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("something old", DeprecationWarning)
        records = json_lines(stream.getvalue())
    finally:
        for h in list(root.handlers):
            if getattr(h, "_herald", False):
                root.removeHandler(h)
        for h in saved[0]:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(saved[1])
        logging.captureWarnings(False)
    text = stream.getvalue()
    assert TOKEN not in text and "webhook-secret-value" not in text
    assert records[0]["logger"] == "discord.http" and "[REDACTED]" in records[0]["message"]
    assert records[1]["feed"] == "f" and records[1]["entry"] == "e1"
    assert records[2]["logger"] == "py.warnings" and "something old" in records[2]["message"]
