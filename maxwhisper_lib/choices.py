"""The device and dtype names every entry point accepts (CLI, benchmark, pipeline, runtime),
kept in one place and light to import (no MAX)."""

from __future__ import annotations

DEVICE_CHOICES = ("auto", "cpu", "gpu")
"""``auto`` picks the GPU when MAX sees one."""
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
"""Activation and weight precisions of the graphs (half precision on a GPU only)."""
DTYPE_CHOICES = (*FLOAT_DTYPES, "int8")
"""``int8``: the CPU's int8 mode (int8 weights in the Mojo kernels)."""
QUANTIZATIONS = ("int8",)
"""``int8``: int8 weights in MAX-Whisper's Mojo kernels, float32 activations (the CPU only)."""
