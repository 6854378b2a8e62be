"""A server's settings (the command line's options) and the service they describe."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

API_KEY_VARIABLE = "MAXWHISPER_API_KEY"


@dataclass(frozen=True)
class ServerSettings:
    """What ``maxwhisper-server`` takes: the model (as :func:`~maxwhisper_lib.load_model`), the
    address, the upload limit (MB, OpenAI's 25 by default), the batch (windows per encoder call
    and the milliseconds an idle server waits for a first request's batch-mates), the queue's
    length, the API key (default: ``$MAXWHISPER_API_KEY``; None: no key needed), how long a
    shutdown waits for requests in flight (None: until they finish) and Ray Serve replicas."""

    model: str = "tiny.en"
    device: str = "auto"
    dtype: str | None = None
    quantization: str | None = None
    weights_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = 25.0
    max_batch: int = 16
    max_wait_ms: float = 10.0
    max_queue: int = 256
    api_key: str | None = None
    graceful_timeout: float | None = None
    log_level: str = "info"
    replicas: int | None = None
    replica_cpus: float = 1.0

    @property
    def key(self) -> str | None:
        return self.api_key or os.environ.get(API_KEY_VARIABLE) or None


MALLOC_ARENAS = 2
"""glibc malloc arenas in a server process: with one per thread (its default, up to 8 per core)
the uploads decoded on many threads fragment memory and a long-running server's resident size
creeps up (measured: +21% in 6 minutes of mixed requests; flat with 2)."""


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """``mallopt(M_ARENA_MAX, arenas)`` in this process (glibc only; False elsewhere). Call it
    before the server's threads start; ``$MALLOC_ARENA_MAX``, when set, is left to rule."""
    import ctypes
    import ctypes.util

    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-8, arenas))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def build_service(settings: ServerSettings, model=None):
    """The :class:`~.app.Service` of ``settings``: the model loaded (or ``model``, already
    loaded) and its :class:`~.batcher.Batcher` (not started)."""
    from ..api import load_model
    from .app import Service
    from .batcher import Batcher

    if model is None:
        model = load_model(
            settings.model,
            settings.device,
            settings.dtype,
            settings.quantization,
            weights_dir=settings.weights_dir,
        )
    batcher = Batcher(
        model.backend,
        max_batch=settings.max_batch,
        max_wait=settings.max_wait_ms / 1000,
        max_queue=settings.max_queue,
    )
    return Service(
        batcher,
        model_name=Path(str(settings.model)).name,
        multilingual=model.is_multilingual,
        max_upload_bytes=int(settings.max_upload_mb * 1_000_000),
        api_key=settings.key,
        description={
            "device": model.device,
            "dtype": model.dtype,
            "quantization": model.quantization,
            "max_batch": settings.max_batch,
        },
    )


__all__ = [
    "API_KEY_VARIABLE",
    "MALLOC_ARENAS",
    "ServerSettings",
    "build_service",
    "limit_malloc_arenas",
]
