"""Looking at weights: tensor table, content checksum, per-block statistics, published size."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

import numpy as np

from .canonical import WhisperWeights
from .catalog import published_parameters, size_name

if TYPE_CHECKING:
    import pandas as pd


def tensors_checksum(weights: WhisperWeights) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (sorted by name): ``sha256:<hex>``.

    Independent of the file that held them, so equal checksums mean identical weights.
    """
    digest = hashlib.sha256()
    for name in sorted(weights.tensors):
        array = np.ascontiguousarray(weights.tensors[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}\n".encode())
        digest.update(array.data)
    return "sha256:" + digest.hexdigest()


def tensor_table(weights: WhisperWeights) -> pd.DataFrame:
    """One row per tensor: name, shape, dtype, number of elements and bytes."""
    import pandas as pd

    rows = [
        {
            "name": name,
            "shape": tuple(array.shape),
            "dtype": str(array.dtype),
            "size": int(array.size),
            "bytes": int(array.nbytes),
        }
        for name, array in weights.tensors.items()
    ]
    return pd.DataFrame(rows, columns=["name", "shape", "dtype", "size", "bytes"])


def parameter_summary(weights: WhisperWeights) -> dict[str, object]:
    """Parameter count against the size OpenAI publishes for this architecture."""
    published = published_parameters(weights.dims)
    count = weights.parameter_count
    return {
        "model": weights.name,
        "size": size_name(weights.dims),
        "parameters": count,
        "published": published,
        "relative_difference": (count - published) / published if published else None,
    }


_BLOCK = re.compile(r"^(?P<stack>encoder|decoder)\.blocks\.(?P<index>\d+)\.")


def block_statistics(weights: WhisperWeights) -> pd.DataFrame:
    """Per encoder/decoder block: parameter count, mean |w|, std and max |w| of its matrices.

    Only 2-D weights (attention and MLP projections) are pooled, so norms and biases do not
    dilute the statistics.
    """
    import pandas as pd

    pooled: dict[tuple[str, int], list[np.ndarray]] = {}
    for name, array in weights.tensors.items():
        match = _BLOCK.match(name)
        if match and array.ndim == 2:
            pooled.setdefault((match["stack"], int(match["index"])), []).append(
                array.astype(np.float32).ravel()
            )
    rows = []
    for (stack, index), arrays in sorted(pooled.items()):
        values = np.concatenate(arrays)
        rows.append(
            {
                "stack": stack,
                "block": index,
                "parameters": int(values.size),
                "mean_abs": float(np.abs(values).mean()),
                "std": float(values.std()),
                "max_abs": float(np.abs(values).max()),
            }
        )
    return pd.DataFrame(
        rows, columns=["stack", "block", "parameters", "mean_abs", "std", "max_abs"]
    )


def plot_block_statistics(stats: pd.DataFrame, columns: tuple[str, ...] = ("mean_abs", "std")):
    """One panel per statistic: encoder and decoder blocks side by side. Returns the figure."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(columns), figsize=(5 * len(columns), 3.5), squeeze=False)
    for axis, column in zip(axes[0], columns, strict=True):
        for stack, rows in stats.groupby("stack"):
            axis.plot(rows["block"], rows[column], marker="o", label=stack)
        axis.set(title=f"{column} of projection weights", xlabel="block", ylabel=column)
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.legend()
    figure.tight_layout()
    return figure
