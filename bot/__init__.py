"""Herald: announce feed entries into Discord, and remember every one of them."""

__version__ = "0.1.0"
USER_AGENT = f"Herald/{__version__} (+https://github.com/herald-bot/herald; feed announcer bot)"
