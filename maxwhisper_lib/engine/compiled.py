"""Compiled models: a model's graphs compiled together once, kept as one MEF file.

On an empty MAX cache every graph compiled on its own pays for elaborating the Mojo kernels it
uses: on a 2-core machine a graph holding one matmul takes ~100 s, one adding 1 to a vector
~35 s, and the six graphs of a first transcription took ~11 minutes, one after the other.
Compiled together in one ``max.graph.Module`` the kernels are elaborated once (measured: three
matmul graphs together in the time of one alone; the six of a transcription in ~4.5 minutes).

The compiled module is exported as a MEF file under the MAX cache folder
(``<MODULAR_CACHE_DIR>/maxwhisper/``), named by a digest of everything that decides its code:
the MAX version, this package's graph and kernel sources, the model's dimensions, dtypes,
device and CPU (or GPU). A later process reads it back in a fraction of a second, without
building the graphs or asking MAX's own cache (which re-derives the module's key: ~4 s).

A fresh machine need not compile the default model at all: the package ships it compiled for
the portable x86-64-v3 target (AVX2, FMA; MAX's ``set_virtual_cpu_target``), xz-compressed in
``maxwhisper_lib/engine/precompiled/`` (``make precompile-cpu`` rebuilds it; a test fails when it no
longer matches the sources). When no build for this machine is stored and the CPU can run
x86-64-v3 code, that file is unpacked into the store and used (on an AVX2 machine it computes
the same bits as a native build, as fast). ``MAXWHISPER_PRECOMPILED=0`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path

from max import driver, engine
from max.engine import Model
from max.graph import Module

from ..atomic import atomic_path, write_bytes_atomically
from . import machine, runtime

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCES = ("graphs/*.py", "weight_mapping.py", "quantization.py", "model.py")
"""This package's files whose content goes into every compiled model's key (a change to any
of them compiles anew)."""
KERNEL_SOURCES = ("kernels/*.mojo",)
"""The Mojo kernels' sources: in the key of a model compiled with them (the CPU's, see
:func:`kernel_digest`), not of one without (the GPU's), which a kernel change leaves valid."""
FIRST_COMPILE_HINT = "about 4-5 minutes on a 2-core CPU, once per machine"
SHIPPED_DIR = PACKAGE_DIR / "precompiled"
"""Compiled models shipped with the package: ``<key>.mef.xz`` and ``<key>.json``."""
PORTABLE_CPU_TARGET = "x86-64-v3"
PORTABLE_CPU_FLAGS = frozenset({"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"})
"""/proc/cpuinfo flags of the x86-64-v3 level (``abm``: LZCNT) besides the baseline's."""
SHIPPED_SWITCH = "MAXWHISPER_PRECOMPILED"


def _digest(patterns: Iterable[str]) -> str:
    digest = hashlib.sha256(metadata.version("max").encode())
    for pattern in patterns:
        for path in sorted(PACKAGE_DIR.glob(pattern)):
            digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@cache
def source_digest() -> str:
    """sha256 over the contents of :data:`SOURCES` (and the MAX version)."""
    return _digest(SOURCES)


@cache
def kernel_digest() -> str:
    """sha256 over the contents of :data:`KERNEL_SOURCES` (and the MAX version): part of the
    config of a model compiled with the kernels."""
    return _digest(KERNEL_SOURCES)


def device_identity(device_name: str) -> str:
    """What the compiled code depends on besides the sources: the CPU's model and flags (MAX
    compiles for the host's instruction set), or the GPU's architecture."""
    if device_name == "gpu":
        device = runtime.get_device("gpu")
        return f"gpu:{getattr(device, 'architecture_name', None) or device}"
    target = driver.get_virtual_cpu_target()
    if target:  # compiling for a CPU target, not for this machine (maxwhisper_lib.lab.precompile)
        return cpu_target_identity(target)
    return f"cpu:{machine.cpu_model()}:{' '.join(sorted(machine.cpu_flags()))}"


def cpu_target_identity(target: str) -> str:
    """The device identity of code compiled for the LLVM CPU ``target``, on any machine."""
    return f"cpu-target:{target}"


def model_key(config: Mapping[str, object], device_name: str, identity: str | None = None) -> str:
    """The file name (without suffix) of the compiled model for ``config`` on ``device_name``
    (or for ``identity``, a :func:`device_identity` other than this machine's)."""
    parts = {
        "sources": source_digest(),
        "device": identity or device_identity(device_name),
        **{k: str(v) for k, v in config.items()},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def portable_key(config: Mapping[str, object]) -> str:
    """The key of ``config``'s portable CPU build (:data:`PORTABLE_CPU_TARGET`), on any machine."""
    return model_key(config, "cpu", cpu_target_identity(PORTABLE_CPU_TARGET))


def runs_portable_cpu_code() -> bool:
    """Whether this machine can run code compiled for :data:`PORTABLE_CPU_TARGET`."""
    return machine.cpu_architecture() == "x86_64" and machine.cpu_flags() >= PORTABLE_CPU_FLAGS


def native_may_be_faster() -> bool:
    """Whether this CPU has more than the portable target uses (AVX-512), so that a build for
    it may run faster than the shipped one (on an AVX2 machine both compute the same bits as
    fast: measured)."""
    return "avx512f" in machine.cpu_flags()


def shipped_enabled() -> bool:
    """Whether shipped compiled models may be used (``MAXWHISPER_PRECOMPILED=0`` says no)."""
    return os.environ.get(SHIPPED_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def shipped_model(
    config: Mapping[str, object], device_name: str, label: str = "the model", stream=None
) -> Path | None:
    """The store path of the shipped portable build of ``config``, unpacked there (and said
    so, to ``stream``) if needed; None where there is none, it is turned off, or this machine
    cannot run it."""
    if device_name != "cpu" or not shipped_enabled() or not runs_portable_cpu_code():
        return None
    key = portable_key(config)
    path = store_dir() / f"{key}.mef"
    if path.is_file() and path.with_suffix(".json").is_file():
        return path
    packed = SHIPPED_DIR / f"{key}.mef.xz"
    if not packed.is_file():
        return None
    try:
        with lzma.open(packed) as source:
            write_bytes_atomically(path, source.read())
        write_bytes_atomically(
            path.with_suffix(".json"), (SHIPPED_DIR / f"{key}.json").read_bytes()
        )
    except (OSError, lzma.LZMAError) as error:
        log.warning("cannot unpack the shipped compiled model %s (%s)", packed, error)
        return None
    _say_shipped(label, stream)
    return path


def store_dir() -> Path:
    """Where compiled models are kept: beside MAX's own cache, so that an empty
    ``MODULAR_CACHE_DIR`` is a cold start for both."""
    return runtime.compile_cache_dir() / "maxwhisper"


def load_models(
    label: str,
    config: Mapping[str, object],
    build: Callable[[Module], Mapping[str, str]],
    device_name: str,
    weights: Mapping[str, object],
    custom_extensions: Iterable[Path] = (),
    stream=None,
    shipped: bool = True,
) -> tuple[dict[str, Model], bool]:
    """The graphs ``build`` adds to a module, compiled together once (or read back) and bound
    to ``weights``; and whether they came from the store (no compile).

    ``build(module)`` returns each graph's name for the caller -> the graph's own name; the
    result is keyed by the caller's names. A stored model that cannot be read (truncated,
    another MAX build) is compiled anew and replaced; a store that cannot be written only costs
    the next process a compile. ``stream``: where :func:`compile_progress` writes (stderr).
    ``shipped``: a shipped portable build may stand in for this machine's (see
    :func:`shipped_model`).
    """
    session = runtime.get_session(device_name)
    path = store_path(config, device_name)
    if shipped and not (path.is_file() and path.with_suffix(".json").is_file()):
        path = shipped_model(config, device_name, label, stream) or path
    if path.is_file() and path.with_suffix(".json").is_file():
        start = time.perf_counter()
        try:
            names = json.loads(path.with_suffix(".json").read_text())
            models = session.init_all(engine.read(path), weights_registry=dict(weights))
            result = {ours: models[graph] for ours, graph in names.items()}
        except Exception as error:  # a damaged or foreign file: compile again
            log.warning("cannot read the compiled %s (%s): compiling again", path, error)
            path.unlink(missing_ok=True)
        else:
            log.info("read compiled %s from %s in %.2f s", label, path, time.perf_counter() - start)
            return result, True
    compiled, names = compile_to_store(label, config, build, device_name, custom_extensions, stream)
    models = session.init_all(compiled, weights_registry=dict(weights))
    return {ours: models[graph] for ours, graph in names.items()}, False


def _say_shipped(label: str, stream=None) -> None:
    """Tell the user that the shipped portable build is now in use, and (on a CPU that has more
    than x86-64-v3, where a native build may be faster) how to build a native one."""
    stream = stream or sys.stderr
    print(
        f"maxwhisper: using {label} as shipped with MAX-Whisper, compiled for "
        f"{PORTABLE_CPU_TARGET} (no compile on this machine; kept in {store_dir()})",
        file=stream,
        flush=True,
    )
    if native_may_be_faster():
        print(
            "maxwhisper: this CPU has AVX-512, which a native build may use: "
            "`python -m maxwhisper_lib.lab.precompile --target cpu` compiles one (minutes, once)",
            file=stream,
            flush=True,
        )


def compile_to_store(
    label: str,
    config: Mapping[str, object],
    build: Callable[[Module], Mapping[str, str]],
    device_name: str,
    custom_extensions: Iterable[Path] = (),
    stream=None,
) -> tuple[engine.CompiledModel, dict[str, str]]:
    """Compile the graphs ``build`` adds to a module and keep them in the store (no weights
    bound, so it also works for a virtual GPU: :mod:`maxwhisper_lib.lab.precompile`); the compiled
    model and our graph names -> the module's."""
    session = runtime.get_session(device_name)
    module = Module()
    names = dict(build(module))
    with compile_progress(label, stream):
        compiled = session.compile(module, custom_extensions=list(custom_extensions))
    _export(compiled, store_path(config, device_name), names)
    return compiled, names


def store_path(config: Mapping[str, object], device_name: str) -> Path:
    """The MEF file of the compiled model for ``config`` on ``device_name``."""
    return store_dir() / f"{model_key(config, device_name)}.mef"


def _export(compiled: engine.CompiledModel, path: Path, names: Mapping[str, str]) -> None:
    """Write ``compiled`` to ``path`` and the graph names beside it, each atomically (the
    names last: a model is only found once both are complete)."""
    try:
        with atomic_path(path) as temporary:
            compiled.export_mef(str(temporary))
        write_bytes_atomically(
            path.with_suffix(".json"), json.dumps(dict(names), indent=1).encode()
        )
    except (OSError, RuntimeError) as error:
        log.warning("cannot keep the compiled model in %s (%s)", path.parent, error)


@contextmanager
def compile_progress(label: str, stream=None) -> Iterator[None]:
    """Say that ``label`` is compiling and how long it took; on a terminal, tick the elapsed
    seconds while it runs (a compile is one blocking call with no progress of its own)."""
    stream = stream or sys.stderr
    print(
        f"maxwhisper: compiling {label} for MAX (first run on this machine: "
        f"{FIRST_COMPILE_HINT}; cached afterwards)",
        file=stream,
        flush=True,
    )
    start = time.perf_counter()
    done = threading.Event()
    ticker = None
    if getattr(stream, "isatty", lambda: False)():

        def tick() -> None:
            while not done.wait(1.0):
                print(
                    f"\r  compiling... {time.perf_counter() - start:4.0f} s",
                    end="",
                    file=stream,
                    flush=True,
                )
            print(file=stream, flush=True)

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
    try:
        yield
    finally:
        done.set()
        if ticker is not None:
            ticker.join()
    print(
        f"maxwhisper: compiled {label} in {time.perf_counter() - start:.0f} s "
        f"(kept in {store_dir()})",
        file=stream,
        flush=True,
    )
