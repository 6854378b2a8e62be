"""Compile a model's graphs ahead of time: for a GPU this machine lacks, or for a CPU target.

**GPU.** MAX 26.7 can compile for an accelerator it does not see: in virtual-device mode
(``max.driver.set_virtual_device_api`` / ``_target_arch`` / ``_count``, what ``max serve
--target`` uses) an ``Accelerator()`` stands for a GPU of the given architecture, graphs compile
for it and export as MEF files, and nothing runs. This module does that for MaxWhisper's graphs
and writes them in the compiled-model store's layout (``maxwhisper/<key>.mef`` and ``.json``),
so that a GPU host given the folder as ``MODULAR_CACHE_DIR`` (or with the files copied into its
own ``~/.cache/modular/maxwhisper/``) reads them back instead of compiling:

    python -m maxwhisper_lib.lab.precompile --model tiny.en --target cuda:sm_90a \\
        --dtypes float32,float16 --output build/precompiled

**Portable CPU build** (``--target cpu:x86-64-v3``, ``make precompile-cpu``): the CPU graphs
compiled for an LLVM CPU target instead of this machine (``max.driver.set_virtual_cpu_target``),
written xz-compressed as ``<key>.mef.xz`` + ``<key>.json`` into ``--output`` (default: the
package's ``precompiled/`` folder, which ships them: :mod:`maxwhisper_lib.engine.compiled`). A build
written there is then run on a clip (:mod:`maxwhisper_lib.lab.verify_build`) and removed if its
transcript is wrong: MAX 26.7 made wrong x86-64-v3 code on an AVX-512 host.
**Native CPU build** (``--target cpu``): compiled for this machine into its store, e.g. on an
AVX-512 machine that would otherwise use the portable build.

The store's key holds the device (GPU architecture or CPU target), the MAX version and this
package's graph sources, so a file is used only where it fits and by the same code. Virtual
modes must start before the process opens any device: run this in a process of its own (the
command does).
"""

from __future__ import annotations

import argparse
import lzma
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..choices import FLOAT_DTYPES

GPU_APIS = ("cuda", "hip")
DEFAULT_TARGET = "cuda:sm_90a"
"""NVIDIA Hopper (H100, H200), the GPU this project's device machine lends."""
SHIPPED_TARGET = "cpu:x86-64-v3"
"""The CPU build the package ships (:data:`maxwhisper_lib.engine.compiled.PORTABLE_CPU_TARGET`)."""
SHIPPED_DTYPES = ("float32", "int8")
"""The dtypes of the shipped CPU build (and the default for any CPU target)."""


def parse_target(target: str) -> tuple[str, str]:
    """``"cuda:sm_90a"`` -> ``("cuda", "sm_90a")``, ``"cpu:x86-64-v3"`` -> ``("cpu",
    "x86-64-v3")``, ``"cpu"`` (this machine) -> ``("cpu", "")``; a clear ValueError otherwise."""
    api, _, arch = target.partition(":")
    if api == "cpu" and arch != "native":
        return api, arch
    if api not in GPU_APIS or not arch:
        raise ValueError(
            f"target {target!r}: expected API:ARCHITECTURE with API one of {', '.join(GPU_APIS)} "
            "(e.g. cuda:sm_90a for H100/H200, cuda:sm_80 for A100, hip:gfx942 for MI300X), "
            "cpu:LLVM-CPU (e.g. cpu:x86-64-v3, portable) or cpu (this machine)"
        )
    return api, arch


def enter_virtual_device(target: str) -> str:
    """Make this process compile for ``target`` (before any device is opened: MAX fixes the
    devices at their first use): a virtual GPU as its one accelerator, or a CPU target for
    every CPU kernel (none for ``cpu``); the device name to build for, ``gpu`` or ``cpu``."""
    from max import driver

    api, arch = parse_target(target)
    if api == "cpu":
        if arch:
            driver.set_virtual_cpu_target(arch)
        return "cpu"
    driver.set_virtual_device_api(api)
    driver.set_virtual_device_target_arch(arch)
    driver.set_virtual_device_count(1)
    return "gpu"


def precompile(
    model: str, target: str, dtypes: Sequence[str], output: Path | None = None, stream=None
) -> list[Path]:
    """Compile ``model``'s graphs for ``target`` in each of ``dtypes`` into the store and copy
    the files into ``output/maxwhisper/`` when given (a CPU target: xz-compressed into
    ``output/`` itself, the shipped layout); the files written."""
    device = enter_virtual_device(target)
    from ..checkpoints import load_weights
    from ..checkpoints.catalog import OFFICIAL_NAMES
    from ..engine.model import MaxWhisper
    from .benchmark.sizes import PACKAGED, size_weights

    # an official size with no weights here: random ones at its dims (the graphs are the same)
    random = model in OFFICIAL_NAMES and model not in PACKAGED
    weights = size_weights(model) if random else load_weights(model)
    written = []
    for dtype in dtypes:
        model_at = MaxWhisper(weights, device=device, dtype=dtype)
        paths = model_at.compile_only(stream)
        if output is not None and device == "cpu":
            written.extend(f for path in paths for f in ship(path, output))
            continue
        files = [f for path in paths for f in (path, path.with_suffix(".json"))]
        if output is not None:
            (output / "maxwhisper").mkdir(parents=True, exist_ok=True)
            files = [Path(shutil.copy2(f, output / "maxwhisper" / f.name)) for f in files]
        written.extend(files)
    return written


def ship(mef: Path, output: Path) -> list[Path]:
    """``mef`` xz-compressed (24 MB -> under 1 MB for tiny.en) and its names file, into
    ``output``: the layout of :data:`maxwhisper_lib.engine.compiled.SHIPPED_DIR`."""
    output.mkdir(parents=True, exist_ok=True)
    packed = output / f"{mef.name}.xz"
    with lzma.open(packed, "wb", preset=9) as out:
        out.write(mef.read_bytes())
    names = Path(shutil.copy2(mef.with_suffix(".json"), output / mef.with_suffix(".json").name))
    return [packed, names]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="tiny.en",
        help="a model name or weights path; an official size without weights here "
        "(large-v3, ...) compiles on random weights at its dims",
    )
    parser.add_argument(
        "--target",
        default=DEFAULT_TARGET,
        help="API:ARCH (e.g. cuda:sm_90a), cpu:LLVM-CPU (e.g. cpu:x86-64-v3) or cpu (this machine)",
    )
    parser.add_argument(
        "--dtypes",
        default=None,
        help="comma-separated (default: GPU float32,float16; CPU float32,int8)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder for the files (a CPU target: default the package's precompiled/ folder)",
    )
    args = parser.parse_args(argv)
    try:
        api, arch = parse_target(args.target)
        default_dtypes = ",".join(SHIPPED_DTYPES) if api == "cpu" else "float32,float16"
        dtypes = [d for d in (args.dtypes or default_dtypes).split(",") if d]
        unknown = [d for d in dtypes if d not in (*FLOAT_DTYPES, "int8")]
        if unknown or not dtypes or ("int8" in dtypes and api != "cpu"):
            raise ValueError(
                f"dtypes {unknown or dtypes}: choose from {', '.join(FLOAT_DTYPES)} (int8: CPU only)"
            )
    except ValueError as error:
        parser.error(str(error))
    output = args.output
    if output is None and api == "cpu" and arch:
        output = _shipped_dir()
    start = time.perf_counter()
    written = precompile(args.model, args.target, dtypes, output)
    for path in written:
        print(f"{path}  {path.stat().st_size / 2**20:.1f} MiB")
    print(f"compiled for {args.target} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if api == "cpu" and arch and output == _shipped_dir():
        return _verify_shipped(args.model, dtypes, written)
    return 0


def _shipped_dir() -> Path:
    from ..engine.compiled import SHIPPED_DIR

    return SHIPPED_DIR


def _verify_shipped(model: str, dtypes: Sequence[str], written: Sequence[Path]) -> int:
    """Run the new shipped build on a clip (:mod:`maxwhisper_lib.lab.verify_build`); if it is
    wrong, remove its files, and their uncompressed copies in this machine's compiled-model
    store (which later processes would use), so that it can neither ship nor run."""
    from ..engine.compiled import store_dir
    from .verify_build import check_in_fresh_store

    check = check_in_fresh_store(model, dtypes)
    print(check.stdout.strip(), file=sys.stderr)
    if check.returncode == 0:
        return 0
    for path in written:
        path.unlink(missing_ok=True)
        key = path.name.removesuffix(".mef.xz").removesuffix(".json")
        for stored in (store_dir() / f"{key}.mef", store_dir() / f"{key}.json"):
            stored.unlink(missing_ok=True)
    print(
        "the shipped build computes wrong transcripts (above) and was removed: MAX 26.7 makes "
        "wrong x86-64-v3 code on some hosts (an AVX-512 Xeon, 2026-12-04); build it on an AVX2 "
        "machine (`git checkout maxwhisper_lib/engine/precompiled` restores the committed one)\n"
        + check.stderr[-2000:],
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
