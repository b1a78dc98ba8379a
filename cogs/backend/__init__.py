"""The bot's own machinery as extensions: command sync, the error handler, learning servers."""
