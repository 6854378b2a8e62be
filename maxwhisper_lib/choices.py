"""The device and dtype names every entry point accepts (CLI, benchmark, pipeline, runtime),
kept in one place and light to import (no MAX)."""

from __future__ import annotations

from .errors import DecodingOptionsError

DEVICE_CHOICES = ("auto", "cpu", "gpu")
"""``auto`` picks the GPU when MAX sees one."""
ENGINES = ("max", "torch")
"""``torch``: openai-whisper's PyTorch model on the same weights (the reference)."""
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
"""Activation and weight precisions of the graphs (half precision on a GPU only)."""
DTYPE_CHOICES = (*FLOAT_DTYPES, "int8")
"""``int8``: the CPU's int8 mode (int8 weights in the Mojo kernels)."""
QUANTIZATIONS = ("int8",)
"""``int8``: int8 weights in MAX-Whisper's Mojo kernels, float32 activations (the CPU only)."""


def device_choice(device: str) -> str:
    """``device`` as one of :data:`DEVICE_CHOICES` (``cuda``, ``cuda:0``: ``gpu``), whether or
    not that device is here; DecodingOptionsError for anything else."""
    if not isinstance(device, str):
        raise DecodingOptionsError(
            f"device must be a string ({', '.join(DEVICE_CHOICES)}), got {device!r}"
        )
    name = device.lower()
    if name.startswith("cuda"):
        name = "gpu"
    if name not in DEVICE_CHOICES:
        raise DecodingOptionsError(
            f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}"
        )
    return name
