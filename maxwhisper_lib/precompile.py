"""Compile a model's GPU graphs on a machine without the GPU, ahead of time.

MAX 26.7 can compile for an accelerator it does not see: in virtual-device mode
(``max.driver.set_virtual_device_api`` / ``_target_arch`` / ``_count``, what ``max serve
--target`` uses) an ``Accelerator()`` stands for a GPU of the given architecture, graphs compile
for it and export as MEF files, and nothing runs. This module does that for MaxWhisper's graphs
and writes them in the compiled-model store's layout (``maxwhisper/<key>.mef`` and ``.json``),
so that a GPU host given the folder as ``MODULAR_CACHE_DIR`` (or with the files copied into its
own ``~/.cache/modular/maxwhisper/``) reads them back instead of compiling:

    python -m maxwhisper_lib.precompile --model tiny.en --target cuda:sm_90a \\
        --dtypes float32,float16 --output build/precompiled

The store's key holds the GPU's architecture name, the MAX version and this package's graph
sources, so a file is used only by a GPU of the same architecture running the same code.
Virtual-device mode must start before the process opens any device: run this in a process of
its own (the command does).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .choices import FLOAT_DTYPES

GPU_APIS = ("cuda", "hip")
DEFAULT_TARGET = "cuda:sm_90a"
"""NVIDIA Hopper (H100, H200), the GPU this project's device machine lends."""


def parse_target(target: str) -> tuple[str, str]:
    """``"cuda:sm_90a"`` -> ``("cuda", "sm_90a")``; a clear ValueError otherwise."""
    api, _, arch = target.partition(":")
    if api not in GPU_APIS or not arch:
        raise ValueError(
            f"target {target!r}: expected API:ARCHITECTURE with API one of {', '.join(GPU_APIS)} "
            "(e.g. cuda:sm_90a for H100/H200, cuda:sm_80 for A100, hip:gfx942 for MI300X)"
        )
    return api, arch


def enter_virtual_gpu(target: str) -> None:
    """Make this process's one accelerator a virtual GPU of ``target`` (before any device is
    opened: MAX fixes the devices at their first use)."""
    from max import driver

    api, arch = parse_target(target)
    driver.set_virtual_device_api(api)
    driver.set_virtual_device_target_arch(arch)
    driver.set_virtual_device_count(1)


def precompile(
    model: str, target: str, dtypes: Sequence[str], output: Path | None = None, stream=None
) -> list[Path]:
    """Compile ``model``'s graphs for a virtual GPU ``target`` in each of ``dtypes`` into the
    store (and copy the files into ``output/maxwhisper/`` when given); the files written."""
    enter_virtual_gpu(target)
    from .model import MaxWhisper
    from .weights import load_weights

    weights = load_weights(model)
    written = []
    for i, dtype in enumerate(dtypes):  # the greedy selection graph serves every dtype: once
        model_at = MaxWhisper(weights, device="gpu", dtype=dtype, device_greedy=i == 0)
        paths = model_at.compile_only(stream)
        files = [f for path in paths for f in (path, path.with_suffix(".json"))]
        if output is not None:
            (output / "maxwhisper").mkdir(parents=True, exist_ok=True)
            files = [Path(shutil.copy2(f, output / "maxwhisper" / f.name)) for f in files]
        written.extend(files)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en", help="a model name or weights path")
    parser.add_argument("--target", default=DEFAULT_TARGET, help="API:ARCH, e.g. cuda:sm_90a")
    parser.add_argument("--dtypes", default="float32,float16", help="comma-separated")
    parser.add_argument("--output", type=Path, default=None, help="folder to copy the files to")
    args = parser.parse_args(argv)
    dtypes = [d for d in args.dtypes.split(",") if d]
    unknown = [d for d in dtypes if d not in FLOAT_DTYPES]
    try:
        parse_target(args.target)
        if unknown or not dtypes:
            raise ValueError(f"dtypes {unknown or dtypes}: choose from {', '.join(FLOAT_DTYPES)}")
    except ValueError as error:
        parser.error(str(error))
    start = time.perf_counter()
    for path in precompile(args.model, args.target, dtypes, args.output):
        print(f"{path}  {path.stat().st_size / 2**20:.1f} MiB")
    print(f"compiled for {args.target} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
