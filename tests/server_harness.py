"""Servers for the tests, for real: uvicorn on 127.0.0.1 (a free port) in a thread of the test
process (sharing the session's model), or ``maxwhisper-server`` as a child process (the lab's
load benchmark starts it the same way)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

import uvicorn

from maxwhisper_lib.lab.server_load import RunningServer, free_port, server, wav_bytes

__all__ = ["free_port", "running", "server_process", "wav_bytes"]


@contextlib.contextmanager
def running(app) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    threaded = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=threaded.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not threaded.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = threaded.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        threaded.should_exit = True
        thread.join(60)


def server_process(*args: str) -> contextlib.AbstractContextManager[RunningServer]:
    """``python -m maxwhisper_lib.server ARGS`` as a child process until it answers
    ``/health`` (its output in :meth:`RunningServer.output`); SIGTERM afterwards."""
    return server([sys.executable, "-m", "maxwhisper_lib.server", *args])
