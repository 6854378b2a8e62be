"""The weight mapping: the graphs' names and shapes, and the decoder's row layout (weights at the
checkpoint's precision for the Mojo kernels) on toy weights: fast, nothing compiles."""

from __future__ import annotations

import numpy as np
import pytest
from max.dtype import DType

from maxwhisper_lib.checkpoints.synthetic import TOY_DIMS, random_weights
from maxwhisper_lib.engine.model import MaxWhisper
from maxwhisper_lib.engine.weight_mapping import (
    ROW_LINEARS,
    TOKEN_EMBEDDING,
    is_row_weight,
    map_weights,
    row_weight_dtype,
)
from maxwhisper_lib.errors import DecodingOptionsError


@pytest.fixture(scope="module")
def toy16():
    return random_weights(TOY_DIMS, seed=1, dtype="float16")


@pytest.mark.parametrize("rows", [False, True])
def test_registry_holds_what_the_graphs_declare(toy16, rows):
    """One source of names and shapes: the graphs declare them, the mapping produces them."""
    from max.graph import Module

    from maxwhisper_lib.engine.graphs import declared_weights

    model = MaxWhisper(toy16, device="cpu", row_kernels=rows)
    declared = declared_weights(model.graphs(Module()).values())
    registry = map_weights(toy16, np.float32, rows=rows)
    assert {k: v.shape for k, v in registry.items()} == {k: s for k, (s, _) in declared.items()}


def test_row_weights_keep_the_checkpoint_layout_and_precision(toy16):
    src = toy16.tensors
    registry = map_weights(toy16, np.float32, rows=True)
    assert "decoder.logits.weight" not in registry  # the token embedding doubles as it
    assert registry[TOKEN_EMBEDDING].dtype == np.float16
    np.testing.assert_array_equal(registry[TOKEN_EMBEDDING], src[f"{TOKEN_EMBEDDING}.weight"])
    block = "decoder.blocks.1"
    np.testing.assert_array_equal(registry[f"{block}.mlp.fc1.weight"], src[f"{block}.mlp.0.weight"])
    qkv = np.concatenate([src[f"{block}.attn.{p}.weight"] for p in ("query", "key", "value")])
    np.testing.assert_array_equal(registry[f"{block}.attn.qkv.weight"], qkv)
    for name, array in registry.items():
        row = name.startswith("decoder.") and is_row_weight(name)
        assert array.dtype == (np.float16 if row else np.float32), name
        assert array.flags.c_contiguous
    # the encoder and the cross-attention key/value projection keep MAX's (in, out) float32
    assert registry[f"{block}.cross_attn.kv.weight"].shape == (16, 32)
    assert registry["encoder.blocks.0.attn.qkv.weight"].dtype == np.float32


def test_float32_checkpoints_stay_float32():
    toy32 = random_weights(TOY_DIMS, seed=2, dtype="float32")
    assert row_weight_dtype(toy32) == np.float32
    registry = map_weights(toy32, np.float32, rows=True)
    assert all(v.dtype == np.float32 for v in registry.values())


def test_row_weight_names():
    for layer in ROW_LINEARS:
        assert is_row_weight(f"decoder.blocks.3.{layer}.weight")
        assert is_row_weight(f"block.{layer}.weight")  # the single-block check graph's alias
        assert not is_row_weight(f"decoder.blocks.3.{layer}.bias")
    assert not is_row_weight("decoder.blocks.0.cross_attn.kv.weight")
    assert is_row_weight(TOKEN_EMBEDDING)


def test_model_uses_row_kernels_on_cpu_only(toy16):
    model = MaxWhisper(toy16, device="cpu")
    assert model.row_kernels and model.row_dtype == DType.float16
    classic = MaxWhisper(toy16, device="cpu", row_kernels=False)
    assert classic.row_dtype is None and "decoder.logits.weight" in classic.registry
    assert "row_kernels=False" in repr(classic)


def test_row_kernels_refused_off_the_cpu(toy16, monkeypatch):
    from maxwhisper_lib.engine import runtime

    monkeypatch.setattr(runtime, "resolve_device_name", lambda device: "gpu")
    with pytest.raises(DecodingOptionsError, match="CPU only"):
        MaxWhisper(toy16, device="gpu", row_kernels=True)
