"""The same app served by Ray Serve: each replica loads the model once (compiled, or read from
the shipped build) and batches its own requests; Ray's proxy spreads requests over the replicas.

``maxwhisper-server --replicas 2`` starts Ray on this machine (or joins ``$RAY_ADDRESS``) and
serves until interrupted; :func:`application` is the deployment for ``serve.run`` in code.
"""

from __future__ import annotations

import time
from typing import Any

from .settings import ServerSettings

APP_NAME = "maxwhisper"


def application(settings: ServerSettings) -> Any:
    """A Ray Serve application of ``settings.replicas`` replicas of the server's app."""
    from ray import serve

    @serve.deployment(
        name="MaxWhisperServer",
        num_replicas=settings.replicas or 1,
        ray_actor_options={"num_cpus": settings.replica_cpus},
        max_ongoing_requests=settings.max_batch + settings.max_queue,
    )
    @serve.ingress()
    class MaxWhisperServer:
        def __init__(self, settings: ServerSettings) -> None:
            from .settings import build_service, limit_malloc_arenas

            limit_malloc_arenas()
            self.service = build_service(settings)
            self.service.scheduler.start()

        def __serve_build_asgi_app__(self):
            from .app import create_app

            return create_app(self.service, manage_scheduler=False)

        def __del__(self) -> None:
            self.service.scheduler.stop(timeout=60)

    return MaxWhisperServer.bind(settings)


def run(settings: ServerSettings, *, blocking: bool = True) -> None:
    """Start Ray Serve on ``settings.host:port`` with the application; block until interrupted
    (then shut Serve down) unless ``blocking`` is False."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(application(settings), name=APP_NAME, route_prefix="/")
    print(
        f"maxwhisper-server: {settings.replicas} Ray Serve replica(s) of {settings.model} on "
        f"http://{settings.host}:{settings.port}",
        flush=True,
    )
    if not blocking:
        return
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()


__all__ = ["APP_NAME", "application", "run"]
