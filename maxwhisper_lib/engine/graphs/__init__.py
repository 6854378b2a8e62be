"""MAX Graph construction for Whisper: building blocks, encoder and decoder graphs.

Nothing here binds weights or runs anything. The graphs declare the weights they need (names,
shapes, dtypes: :class:`.layers.Params`); :mod:`maxwhisper_lib.engine.weight_mapping` produces
exactly those tensors from a checkpoint, :func:`check_registry` holds the two together before
a compile, and :mod:`maxwhisper_lib.engine.runtime` compiles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from max.dtype import DType
from max.graph import Graph

from ...errors import WeightsError


def declared_weights(graphs: Iterable[Graph]) -> dict[str, tuple[tuple[int, ...], DType]]:
    """Name -> (shape, dtype) of every weight ``graphs`` declare."""
    declared: dict[str, tuple[tuple[int, ...], DType]] = {}
    for graph in graphs:
        for name, weight in graph._weights.items():  # MAX 26.7's record of a graph's weights
            declared[name] = (tuple(int(d) for d in weight.value.shape), weight.value.dtype)
    return declared


def check_registry(graphs: Iterable[Graph], registry: Mapping[str, np.ndarray]) -> None:
    """WeightsError unless ``registry`` holds exactly the weights ``graphs`` declare, each with
    the declared shape and dtype."""
    declared = declared_weights(graphs)
    problems = [f"missing {name}" for name in sorted(set(declared) - set(registry))]
    problems += [f"unused {name}" for name in sorted(set(registry) - set(declared))]
    for name in sorted(set(declared) & set(registry)):
        shape, dtype = declared[name]
        array = registry[name]
        if array.shape != shape or DType.from_numpy(array.dtype) != dtype:
            problems.append(
                f"{name} is {array.shape} {array.dtype}, the graphs declare {shape} {dtype.name}"
            )
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise WeightsError(f"the mapped weights do not fit the graphs: {shown}")


__all__ = ["check_registry", "declared_weights"]
