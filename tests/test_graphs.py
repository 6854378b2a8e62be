"""The model's graphs built (not compiled) on toy dimensions, and the decoder step's inputs
object: fast checks of graph construction and of one source for the step's input order."""

from __future__ import annotations

import re

import numpy as np
import pytest
from max.dtype import DType
from max.graph import BufferType, DeviceRef, Module, TensorType

from maxwhisper_lib.checkpoints.synthetic import TOY_DIMS, random_weights
from maxwhisper_lib.engine.graphs import check_registry, declared_weights
from maxwhisper_lib.engine.graphs.decoder import DecoderStepInputs
from maxwhisper_lib.engine.model import ALL_GRAPHS, MaxWhisper
from maxwhisper_lib.errors import WeightsError


@pytest.mark.parametrize("row_kernels", [True, False])
def test_every_graph_builds_on_toy_dimensions(row_kernels):
    """Every graph of the model builds into one module on TOY_DIMS (its weights found under
    their mapped names and shapes), with or without the CPU row kernels."""
    model = MaxWhisper(random_weights(), device="cpu", row_kernels=row_kernels)
    graphs = model.graphs(Module())
    assert set(graphs) == set(ALL_GRAPHS)
    assert len({g.name for g in graphs.values()}) == len(graphs)


def test_a_model_can_build_only_some_graphs():
    """``only_graphs`` (what the architecture checks compile): those graphs, their weights and
    nothing else, a store key of their own; the other graphs and unknown names are refused."""
    full = MaxWhisper(random_weights(), device="cpu")
    encoder_only = MaxWhisper(random_weights(), device="cpu", only_graphs=["encoder"])
    assert set(encoder_only.graphs(Module())) == {"encoder"}
    assert set(encoder_only.registry) == set(declared_weights([encoder_only.graphs()["encoder"]]))
    assert set(encoder_only.registry) < set(full.registry)
    assert all(name.startswith("encoder.") for name in encoder_only.registry)
    assert encoder_only.compile_config()["graphs"] == ("encoder",)
    assert "graphs" not in full.compile_config()  # the default model's key is unchanged
    with pytest.raises(ValueError, match="'decoder_step' is not among"):
        encoder_only.compiled("decoder_step")
    with pytest.raises(ValueError, match=r"unknown graphs \['decoder'\]"):
        MaxWhisper(random_weights(), device="cpu", only_graphs=["encoder", "decoder"])


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
    graphs = model.graphs(Module()).values()
    declared = declared_weights(graphs)
    registry = model.registry
    assert sorted(declared) == sorted(registry)
    for name, (shape, dtype) in declared.items():
        array = registry[name]
        assert shape == array.shape, name
        assert dtype == DType.from_numpy(array.dtype), name
    check_registry(graphs, registry)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("decoder.ln.bias"), "missing decoder.ln.bias"),
        (lambda r: r.update(extra=np.zeros(3, np.float32)), "unused extra"),
        (
            lambda r: r.update({"encoder.conv1.bias": np.zeros(5, np.float32)}),
            "encoder.conv1.bias is (5,) float32, the graphs declare (16,) float32",
        ),
        (
            lambda r: r.update({"encoder.ln_post.weight": np.zeros(16, np.float64)}),
            "encoder.ln_post.weight is (16,) float64",
        ),
    ],
)
def test_weights_that_do_not_fit_the_graphs_are_refused(toy_graphs, change, message):
    """Before any compile: a missing, unused, wrong-shape or wrong-dtype tensor is named."""
    graphs, registry = toy_graphs
    registry = dict(registry)
    change(registry)
    with pytest.raises(WeightsError, match=re.escape(message)):
        check_registry(graphs, registry)


@pytest.fixture(scope="module")
def toy_graphs():
    """The CPU model's graphs on TOY_DIMS (built once: a few seconds) and its registry."""
    model = MaxWhisper(random_weights(), device="cpu")
    return list(model.graphs(Module()).values()), model.registry


def test_graphs_build_for_a_deep_encoder_and_a_shallow_decoder():
    """Depths differ in large-v3-turbo (32/4) and distil-whisper (32/2): every graph builds with
    its own stack's depth and binds exactly the mapped weights."""
    from dataclasses import replace

    dims = replace(TOY_DIMS, n_audio_layer=3, n_text_layer=1)
    model = MaxWhisper(random_weights(dims), device="cpu")
    graphs = model.graphs(Module()).values()
    check_registry(graphs, model.registry)
    declared = declared_weights(graphs)
    assert "encoder.blocks.2.mlp.fc2.bias" in declared
    assert not any(name.startswith("decoder.blocks.1.") for name in declared)
