"""Placeholder until Discord delivery lands."""
from bot.config import Config


def run_discord(config: Config, *, once: bool = False) -> int:
    raise SystemExit("herald: delivery to Discord is not available yet; use --dry-run")
