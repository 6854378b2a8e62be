"""openai-whisper .pt and Hugging Face readers/writers, format detection, inspection helpers."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from maxwhisper_lib.checkpoints import detect_format, read_weights
from maxwhisper_lib.checkpoints.huggingface import WEIGHTS_FILE, read_huggingface, write_huggingface
from maxwhisper_lib.checkpoints.inspect import (
    block_statistics,
    parameter_summary,
    tensor_table,
    tensors_checksum,
)
from maxwhisper_lib.checkpoints.openai_checkpoint import (
    known_alignment_heads,
    read_openai_checkpoint,
    write_openai_checkpoint,
)
from maxwhisper_lib.checkpoints.store import write_canonical
from maxwhisper_lib.checkpoints.synthetic import random_weights
from maxwhisper_lib.errors import WeightsError


@pytest.fixture(scope="module")
def toy():
    return random_weights(seed=7)


@pytest.fixture(scope="module")
def tiny():
    return read_weights("tiny.en")


def _assert_same(a, b):
    assert a.dims == b.dims
    assert set(a.tensors) == set(b.tensors)
    for name, array in a.tensors.items():
        assert b.tensors[name].dtype == array.dtype, name
        np.testing.assert_array_equal(b.tensors[name], array, err_msg=name)


# --- openai-whisper checkpoints ---------------------------------------------------------------


def test_openai_checkpoint_round_trip(tmp_path, toy):
    path = write_openai_checkpoint(toy, tmp_path / "toy.pt")
    back = read_weights(path)
    _assert_same(toy, back)
    assert back.alignment_heads == toy.alignment_heads
    assert back.metadata["format"] == "openai-whisper"


def test_whisper_load_model_accepts_the_checkpoint(tmp_path, tiny):
    import whisper

    model = whisper.load_model(str(write_openai_checkpoint(tiny, tmp_path / "t.pt")), device="cpu")
    state = model.state_dict()
    for name, array in tiny.tensors.items():
        np.testing.assert_array_equal(state[name].numpy(), array.astype(np.float32), err_msg=name)


def test_openai_alignment_heads_agree_with_the_ct2_config(tmp_path, tiny):
    """openai-whisper's own table for tiny.en names the heads the CT2 package's config lists."""
    assert known_alignment_heads("tiny.en", tiny.dims) == tiny.alignment_heads
    plain = tmp_path / "tiny.en.pt"  # an official-style file: no alignment_heads entry
    torch.save(
        {
            "dims": tiny.dims.to_dict(),
            "model_state_dict": {k: torch.from_numpy(v) for k, v in tiny.tensors.items()},
        },
        plain,
    )
    assert read_openai_checkpoint(plain).alignment_heads == tiny.alignment_heads


def test_corrupt_checkpoint(tmp_path, toy):
    path = write_openai_checkpoint(toy, tmp_path / "toy.pt")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(WeightsError, match=r"toy\.pt: not a readable PyTorch checkpoint"):
        read_weights(path)


def test_checkpoint_without_dims(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(WeightsError, match=r"other\.pt: not an openai-whisper checkpoint"):
        read_weights(path)


def test_checkpoint_missing_a_tensor(tmp_path, toy):
    state = {k: torch.from_numpy(v) for k, v in toy.tensors.items() if k != "decoder.ln.bias"}
    path = tmp_path / "short.pt"
    torch.save({"dims": toy.dims.to_dict(), "model_state_dict": state}, path)
    with pytest.raises(WeightsError, match=r"short\.pt: missing tensors: decoder\.ln\.bias"):
        read_weights(path)


# --- Hugging Face -----------------------------------------------------------------------------


def test_huggingface_round_trip(tmp_path, toy):
    folder = write_huggingface(toy, tmp_path / "hf")
    assert detect_format(folder) == "huggingface"
    names = set(load_file(folder / WEIGHTS_FILE))
    assert "model.encoder.layers.0.self_attn.q_proj.weight" in names
    assert "model.decoder.embed_tokens.weight" in names
    assert not any(n.endswith("k_proj.bias") for n in names) and "proj_out.weight" not in names
    back = read_weights(folder)
    _assert_same(toy, back)
    assert back.alignment_heads == toy.alignment_heads


def test_sharded_huggingface_folder(tmp_path, toy):
    folder = write_huggingface(toy, tmp_path / "hf")
    tensors = load_file(folder / WEIGHTS_FILE)
    (folder / WEIGHTS_FILE).unlink()
    names = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(folder / shard), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(keys, shard)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _assert_same(toy, read_weights(folder))
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(WeightsError, match=r"shard\(s\) missing: .*model-00002-of-00002"):
        read_weights(folder)


def _rewrite(folder, edit):
    tensors = load_file(folder / WEIGHTS_FILE)
    edit(tensors)
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})


def test_huggingface_errors(tmp_path, toy):
    folder = write_huggingface(toy, tmp_path / "hf")
    _rewrite(folder, lambda t: t.pop("model.decoder.layers.1.fc2.bias"))
    with pytest.raises(
        WeightsError, match=r"missing tensor 'model\.decoder\.layers\.1\.fc2\.bias'"
    ):
        read_huggingface(folder)

    folder = write_huggingface(toy, tmp_path / "hf", overwrite=True)
    key = "model.encoder.layers.0.self_attn.k_proj.bias"
    _rewrite(folder, lambda t: t.update({key: np.ones(16, np.float16)}))
    with pytest.raises(WeightsError, match=f"{key} is not zero"):
        read_huggingface(folder)

    folder = write_huggingface(toy, tmp_path / "hf", overwrite=True)
    _rewrite(
        folder, lambda t: t.update({"proj_out.weight": t["model.decoder.embed_tokens.weight"] * 2})
    )
    with pytest.raises(WeightsError, match=r"proj_out\.weight is not tied"):
        read_huggingface(folder)

    folder = write_huggingface(toy, tmp_path / "hf", overwrite=True)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"d_model": 32}))
    with pytest.raises(
        WeightsError, match=r"has shape \(16, 80, 3\), but the model dimensions imply \(32, 80, 3\)"
    ):
        read_huggingface(folder)


def test_export_refuses_to_clobber(tmp_path, toy):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(WeightsError, match="exists and is not empty"):
        write_huggingface(toy, tmp_path)
    with pytest.raises(WeightsError, match="not a Hugging Face model folder"):
        write_huggingface(toy, tmp_path, overwrite=True)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs transformers")
def test_transformers_loads_the_export_and_agrees_with_openai_whisper(tmp_path, tiny):
    from transformers import WhisperForConditionalGeneration

    from maxwhisper_lib.decoding.reference import build_reference_model

    folder = write_huggingface(tiny, tmp_path / "hf")
    hf = WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    reference = build_reference_model(tiny)
    mel = torch.randn(1, tiny.dims.n_mels, 3000, generator=torch.Generator().manual_seed(0))
    tokens = torch.tensor([[50257, 50362, 843, 523, 616]])
    with torch.no_grad():
        expected = reference(mel, tokens)
        got = hf(input_features=mel, decoder_input_ids=tokens).logits
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-4)


# --- format detection -------------------------------------------------------------------------


def test_every_format_is_detected(tmp_path, toy):
    write_openai_checkpoint(toy, tmp_path / "toy.pt")
    write_huggingface(toy, tmp_path / "hf")
    write_canonical(toy, tmp_path / "canonical")
    assert detect_format(tmp_path / "toy.pt") == "openai-whisper"
    assert detect_format(tmp_path / "hf") == "huggingface"
    assert detect_format(tmp_path / "canonical") == "canonical"
    _assert_same(toy, read_weights(tmp_path / "canonical"))


def test_unknown_formats(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(WeightsError, match=r"readme\.txt: unknown weight format"):
        read_weights(tmp_path / "readme.txt")
    with pytest.raises(WeightsError, match="unknown weight format: expected a CTranslate2 folder"):
        read_weights(tmp_path)
    with pytest.raises(WeightsError, match="no such file or folder"):
        read_weights(tmp_path / "absent")


# --- inspection -------------------------------------------------------------------------------


def test_tensor_table_and_block_statistics(toy):
    table = tensor_table(toy)
    assert len(table) == len(toy.tensors)
    positional = toy.tensors["encoder.positional_embedding"].size
    assert table["size"].sum() == toy.parameter_count + positional
    stats = block_statistics(toy)
    assert list(stats["stack"]) == ["decoder"] * 2 + ["encoder"] * 2
    encoder_0 = [
        a for k, a in toy.tensors.items() if k.startswith("encoder.blocks.0.") and a.ndim == 2
    ]
    values = np.concatenate([a.astype(np.float32).ravel() for a in encoder_0])
    row = stats[(stats["stack"] == "encoder") & (stats["block"] == 0)].iloc[0]
    assert row.parameters == values.size
    assert row.mean_abs == pytest.approx(np.abs(values).mean(), rel=1e-5)


def test_checksum_sees_one_changed_value(toy):
    changed = toy.astype(np.float16)
    changed.tensors["decoder.ln.bias"][0] += 1
    assert tensors_checksum(toy) == tensors_checksum(toy.astype(np.float16))
    assert tensors_checksum(changed) != tensors_checksum(toy)


def test_parameter_summary_of_tiny(tiny):
    summary = parameter_summary(tiny)
    assert summary["size"] == "tiny" and summary["published"] == 39_000_000
    assert abs(summary["relative_difference"]) < 0.1


def test_distil_layout_deep_encoder_shallow_decoder_round_trips(tmp_path):
    """distil-whisper's Hugging Face folders are openai/whisper's layout with fewer decoder
    layers than encoder layers (distil-large-v3: 32 and 2) and 128 mel bins: read with the
    depths its config.json gives, every tensor in place."""
    from dataclasses import replace

    from maxwhisper_lib.checkpoints.synthetic import TOY_DIMS

    dims = replace(TOY_DIMS, n_mels=128, n_vocab=51866, n_audio_layer=4, n_text_layer=1)
    distil = random_weights(dims, seed=5, name="distil-toy")
    folder = write_huggingface(distil, tmp_path / "distil")
    config = json.loads((folder / "config.json").read_text())
    assert (config["encoder_layers"], config["decoder_layers"], config["num_mel_bins"]) == (
        4,
        1,
        128,
    )
    back = read_weights(folder)
    assert back.dims == dims
    _assert_same(distil, back)
