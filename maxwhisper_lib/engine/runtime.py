"""MAX runtime: device choice, dtypes and host/device conversions (bfloat16 included), one
inference session per device, timed compilation.

Graph construction lives in :mod:`maxwhisper_lib.engine.graphs`; weights reach a compiled model through
``weights_registry`` so a graph compiles once per shape signature and MAX's on-disk cache
(``~/.cache/modular``, see :func:`compile_cache_dir`) reuses it across processes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

import numpy as np
from max.driver import CPU, Accelerator, Buffer, Device, Usage, accelerator_count
from max.dtype import DType
from max.engine import InferenceSession, Model
from max.graph import DeviceRef, Graph

from ..choices import DTYPE_CHOICES, device_choice
from ..errors import DecodingOptionsError

log = logging.getLogger(__name__)


_DTYPES = {"float32": DType.float32, "float16": DType.float16, "bfloat16": DType.bfloat16}


def gpu_available() -> bool:
    """Whether MAX sees an accelerator on this machine."""
    try:
        return accelerator_count() > 0
    except Exception:  # a broken driver install is "no GPU", not a crash
        return False


def resolve_device_name(device: str = "auto") -> str:
    """``auto`` -> ``gpu`` when MAX sees an accelerator, else ``cpu``; validates the choice."""
    name = device_choice(device)
    if name == "auto":
        return "gpu" if gpu_available() else "cpu"
    if name == "gpu" and not gpu_available():
        raise DecodingOptionsError(
            "device 'gpu' requested, but MAX sees no accelerator on this machine"
        )
    return name


@cache
def get_device(name: str) -> Device:
    """The MAX driver device for ``cpu`` or ``gpu`` (one object per process)."""
    return Accelerator() if resolve_device_name(name) == "gpu" else CPU()


def resolve_dtype(dtype: str, device_name: str) -> DType:
    """The MAX dtype for activations and weights; half precision is a GPU option only, and
    ``int8`` (int8 weights, float32 activations) a CPU one."""
    if dtype == "int8":
        if device_name != "cpu":
            raise DecodingOptionsError(
                "dtype int8 runs on the CPU only (Mojo int8 kernels); use float16 on GPU"
            )
        return DType.float32
    if dtype not in _DTYPES:
        raise DecodingOptionsError(
            f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_CHOICES)}"
        )
    if dtype != "float32" and device_name == "cpu":
        raise DecodingOptionsError(f"dtype {dtype} is supported on GPU only; use float32 on CPU")
    return _DTYPES[dtype]


def numpy_dtype(dtype: DType) -> np.dtype:
    """NumPy dtype used to hand weights of ``dtype`` to MAX (bfloat16 goes through float32)."""
    return {DType.float32: np.dtype(np.float32), DType.float16: np.dtype(np.float16)}.get(
        dtype, np.dtype(np.float32)
    )


def host_arrays(arrays: Mapping[str, np.ndarray], dtype: DType) -> dict[str, object]:
    """Host arrays MAX can bind as ``dtype`` weights: NumPy for float32/float16, bfloat16
    tensors (through torch's DLPack, NumPy has no bfloat16) for bfloat16."""
    if dtype == DType.bfloat16:
        import torch

        return {k: torch.from_numpy(np.asarray(v)).to(torch.bfloat16) for k, v in arrays.items()}
    return dict(arrays)


def to_device_as(array: np.ndarray, dtype: DType, device_name: str) -> Buffer:
    """``array`` converted to ``dtype`` on the device (bfloat16 goes through torch)."""
    if dtype == DType.bfloat16:
        import torch

        host = Buffer.from_dlpack(
            torch.from_numpy(np.ascontiguousarray(array, np.float32)).bfloat16()
        )
        return host.to(get_device(device_name))
    return to_device(np.ascontiguousarray(array, dtype=numpy_dtype(dtype)), device_name)


def host_float32(buffer: Buffer) -> np.ndarray:
    """A buffer as float32 NumPy: a view when it is float32 on the host already, else a copy
    (bfloat16 goes through torch)."""
    host = buffer if buffer.is_host else buffer.to(get_device("cpu"))
    if host.dtype == DType.bfloat16:
        import torch

        return torch.from_dlpack(host).float().numpy()
    return host.to_numpy().astype(np.float32, copy=False)


@cache
def get_session(device_name: str) -> InferenceSession:
    """One inference session per device, shared by every model of the process."""
    return InferenceSession(devices=[get_device(device_name)])


def compile_cache_dir() -> Path:
    """Where MAX keeps compiled graphs between processes."""
    return Path(os.environ.get("MODULAR_CACHE_DIR", Path.home() / ".cache" / "modular"))


def device_ref(device_name: str) -> DeviceRef:
    return DeviceRef.from_device(get_device(device_name))


def compile_graph(
    graph: Graph, device_name: str, weights: Mapping[str, np.ndarray] | None = None
) -> Model:
    """Compile ``graph`` (or fetch it from MAX's cache); bind ``weights`` to its ``Weight`` names."""
    start = time.perf_counter()
    model = get_session(device_name).load(graph, weights_registry=dict(weights or {}))
    seconds = time.perf_counter() - start
    log.info("compiled %s for %s in %.1f s", graph.name, device_name, seconds)
    return model


def zeros(shape: Sequence[int], dtype: DType, device: Device) -> Buffer:
    """A zero-filled buffer on ``device``, ready when this returns.

    ``Buffer.zeros`` queues its fill asynchronously: a kernel writing the buffer in place right
    after could run before the fill and see its writes wiped (measured: ~2% of fresh key/value
    caches lost their first step's keys). The device is synchronised before the buffer is used.
    """
    buffer = Buffer.zeros(list(shape), dtype, device)
    device.synchronize()
    return buffer


def to_device(array: np.ndarray, device_name: str) -> Buffer:
    """Copy a host array to the device (a no-copy view on CPU where the layout allows)."""
    buffer = Buffer.from_numpy(np.ascontiguousarray(array))
    device = get_device(device_name)
    return buffer if device.is_host else buffer.to(device)


def host_copy(buffer: Buffer) -> np.ndarray:
    """A host NumPy copy of ``buffer`` (any dtype, any device)."""
    host = buffer if buffer.is_host else buffer.to(get_device("cpu"))
    return host.to_numpy().copy()


def staging_buffer(shape: Sequence[int], dtype: DType, device: Device) -> Buffer:
    """Host memory for copies from ``device`` that do not block (page-locked on a GPU, outside
    the host's hazard tracking: read it only after an event says the copy is done)."""
    return Buffer(dtype, list(shape), device=device, usage=Usage.STAGING | Usage.UNTRACKED)
