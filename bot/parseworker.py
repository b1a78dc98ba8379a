"""The loop of one parse worker process (see :class:`bot.pipeline.ParsePool`).

Kept apart from :mod:`bot.pipeline` so that a worker imports only what parsing needs: the
forkserver preloads this module and :mod:`bot.parse`, and every worker is a fork of it.

The protocol on the worker's pipe: the parent sends ``(function, args)``; the worker answers
``("ok", result)`` or ``("error", exception)``, then waits for the next call. End of file on
the pipe (the parent closed it or died) ends the worker.
"""

from __future__ import annotations

import signal
from multiprocessing.connection import Connection
from typing import Any


def serve(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops Herald, which then stops its workers
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            answer: tuple[str, Any] = ("ok", fn(*args))
        except Exception as exc:  # handed to the caller, which decides what it means for the feed
            answer = ("error", exc)
        try:
            conn.send(answer)
        except (EOFError, OSError):
            return
        except Exception as exc:  # the result or the exception cannot be pickled
            try:
                conn.send(("error", RuntimeError(f"the parser's answer could not be sent back: "
                                                 f"{type(exc).__name__}: {exc}")))
            except (EOFError, OSError):
                return
