"""``maxwhisper-server [options]``: OpenAI's audio API on 127.0.0.1:8000 over a model loaded
once; ``--replicas N`` serves it from N Ray Serve replicas instead of one process.

Exit status: 0 after a clean shutdown (SIGINT or SIGTERM: requests in flight are finished
first), 2 for bad options, 1 when the model cannot be loaded."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..choices import FLOAT_DTYPES, QUANTIZATIONS
from .settings import API_KEY_VARIABLE, ServerSettings

PROG = "maxwhisper-server"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Serve OpenAI's audio API (transcriptions, translations) with Whisper on MAX.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # fmt: off
    p.add_argument("--model", default="tiny.en", help="a named model or a path to weights (as maxwhisper's --model)")
    p.add_argument("--device", default="auto", help="auto, cpu or gpu")
    p.add_argument("--dtype", default=None, choices=FLOAT_DTYPES, help="default: float32 on the CPU, float16 on a GPU")
    p.add_argument("--quantization", default=None, choices=QUANTIZATIONS, help="int8: the CPU's int8 mode")
    p.add_argument("--weights_dir", default=None, help="where named models are extracted (default: weights/)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max_upload_mb", type=float, default=25.0, help="largest upload accepted")
    p.add_argument("--max_batch", type=int, default=16, help="30 s windows decoded together (requests in flight)")
    p.add_argument("--max_wait_ms", type=float, default=10.0, help="how long an idle server waits for a first request's batch-mates")
    p.add_argument("--max_queue", type=int, default=256, help="requests waiting beyond the batch; more get 503")
    p.add_argument("--api_key", default=None, help=f"the key clients must send (default: ${API_KEY_VARIABLE}; none: no key)")
    p.add_argument("--graceful_timeout", type=float, default=None, help="seconds a shutdown waits for requests in flight (default: until done)")
    p.add_argument("--log_level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--replicas", type=int, default=None, help="serve from this many Ray Serve replicas (the scale extra)")
    p.add_argument("--replica_cpus", type=float, default=1.0, help="CPUs Ray reserves per replica")
    # fmt: on
    return p


def settings_from(args: argparse.Namespace) -> ServerSettings:
    """The parsed options as :class:`ServerSettings`; ValueError for impossible values."""
    checks = [
        (args.port < 0 or args.port > 65535, f"--port must be 0-65535, not {args.port}"),
        (args.max_upload_mb <= 0, "--max_upload_mb must be positive"),
        (args.max_batch < 1, "--max_batch must be at least 1"),
        (args.max_wait_ms < 0, "--max_wait_ms must be 0 or more"),
        (args.max_queue < 1, "--max_queue must be at least 1"),
        (args.replicas is not None and args.replicas < 1, "--replicas must be at least 1"),
    ]
    for failed, message in checks:
        if failed:
            raise ValueError(message)
    return ServerSettings(**{k: v for k, v in vars(args).items()})


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``maxwhisper-server`` on ``argv``; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        settings = settings_from(args)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    except ValueError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    from ..errors import DecodingOptionsError, MaxWhisperError

    try:
        if settings.replicas:
            from .ray_serve import run

            run(settings)
        else:
            from . import serve

            serve(settings)
    except DecodingOptionsError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except MaxWhisperError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
