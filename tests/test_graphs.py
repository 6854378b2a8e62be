"""The model's graphs built (not compiled) on toy dimensions, and the decoder step's inputs
object: fast checks of graph construction and of one source for the step's input order."""

from __future__ import annotations

import pytest
from max.dtype import DType
from max.graph import BufferType, DeviceRef, Module, TensorType

from maxwhisper_lib.graphs.decoder import DecoderStepInputs
from maxwhisper_lib.model import GRAPHS, LOG_MEL_PIECE, MaxWhisper
from maxwhisper_lib.weights.synthetic import TOY_DIMS, random_weights


@pytest.mark.parametrize("row_kernels", [True, False])
def test_every_graph_builds_on_toy_dimensions(row_kernels):
    """Every graph of the model builds into one module on TOY_DIMS (its weights found under
    their mapped names and shapes), with or without the CPU row kernels."""
    model = MaxWhisper(random_weights(), device="cpu", row_kernels=row_kernels)
    graphs = model.graphs(Module())
    assert set(graphs) == {*GRAPHS, LOG_MEL_PIECE}
    assert len({g.name for g in graphs.values()}) == len(graphs)


@pytest.mark.parametrize("per_window", [True, False])
def test_step_inputs_have_one_order(per_window):
    """What the caller lists is what the graph unpacks, in the order of the graph's types."""
    types = DecoderStepInputs.types(TOY_DIMS, DType.float32, DeviceRef.CPU(), per_window)
    layers = TOY_DIMS.n_text_layer
    names = [f"value{i}" for i in range(len(types))]
    inputs = DecoderStepInputs.from_list(names, layers, per_window)
    assert inputs.as_list() == names
    assert (inputs.rows is not None) == per_window
    assert len(inputs.cross) == len(inputs.caches) == 2 * layers
    first_cross = names.index(inputs.cross[0])
    assert all(isinstance(t, TensorType) for t in types[:first_cross])
    assert all(isinstance(t, BufferType) for t in types[first_cross + 2 * layers :])
    assert types[names.index(inputs.offset)].shape == []
    assert types[names.index(inputs.tokens)].dtype == DType.int64


@pytest.mark.parametrize(
    ("row_kernels", "dtype"), [(False, "float32"), (True, "float32"), (True, "int8")]
)
def test_graphs_bind_exactly_the_mapped_weights(row_kernels, dtype):
    """One source of names and shapes: the weights the graphs declare are exactly those the
    mapping produces (none missing, none unused), each with the shape and dtype it has there."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # int8 without VNNI
        model = MaxWhisper(random_weights(), device="cpu", dtype=dtype, row_kernels=row_kernels)
    declared = {}
    for graph in model.graphs(Module()).values():
        for name, weight in graph._weights.items():  # MAX's record of the graph's weights
            declared[name] = weight.value
    registry = model.registry
    assert sorted(declared) == sorted(registry)
    for name, weight in declared.items():
        array = registry[name]
        assert tuple(int(d) for d in weight.shape) == array.shape, name
        assert weight.dtype == DType.from_numpy(array.dtype), name
