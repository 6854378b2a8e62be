"""``maxwhisper-server``: OpenAI's audio API over a model loaded once, the requests in flight
decoded together (:mod:`.batcher`), served by uvicorn (:func:`serve`) or by Ray Serve replicas
(:mod:`.ray_serve`). Needs the ``server`` extra (FastAPI, uvicorn, python-multipart)."""

from __future__ import annotations

import signal

from .settings import ServerSettings, build_service, limit_malloc_arenas

__all__ = ["ServerSettings", "build_service", "create_app", "serve"]


def create_app(*args, **kwargs):
    """:func:`.app.create_app` (imported on use: FastAPI is the ``server`` extra)."""
    from .app import create_app as create

    return create(*args, **kwargs)


def serve(settings: ServerSettings) -> None:
    """Load the model, then serve until SIGINT or SIGTERM (requests in flight are finished)."""
    import uvicorn

    from .app import create_app as create

    limit_malloc_arenas()
    service = build_service(settings)
    config = uvicorn.Config(
        create(service),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.graceful_timeout,
    )
    # uvicorn handles SIGINT and SIGTERM (stop accepting, finish the requests in flight, stop
    # the batcher), then raises the signal again for the handler found at start: a no-op one,
    # so that a clean shutdown exits 0
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: None)
    uvicorn.Server(config).run()
