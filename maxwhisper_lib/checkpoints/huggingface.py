"""Hugging Face ``openai/whisper-*`` folders: read (single or sharded safetensors) and export.

Names follow ``transformers``' ``WhisperForConditionalGeneration``: ``model.encoder.layers.0.
self_attn.q_proj.weight``, ``model.decoder.embed_tokens.weight``... The output projection
``proj_out`` is tied to the token embedding; the key projections have no bias.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from ..atomic import atomic_folder
from ..dims import ModelDimensions
from ..errors import WeightsError
from .canonical import WhisperWeights
from .catalog import guess_model_name
from .store import tokenizer_info
from .streams import file_sha256

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# (Hugging Face name, canonical name) of every tensor, per block then top level; {i} is the block.
_ATTENTION = [
    ("q_proj.weight", "query.weight"),
    ("q_proj.bias", "query.bias"),
    ("k_proj.weight", "key.weight"),
    ("v_proj.weight", "value.weight"),
    ("v_proj.bias", "value.bias"),
    ("out_proj.weight", "out.weight"),
    ("out_proj.bias", "out.bias"),
]
_NORM = [("weight", "weight"), ("bias", "bias")]


def _block_names(stack: str, i: int, cross: bool) -> list[tuple[str, str]]:
    hf, ours = f"model.{stack}.layers.{i}", f"{stack}.blocks.{i}"
    pairs = [(f"{hf}.self_attn.{h}", f"{ours}.attn.{c}") for h, c in _ATTENTION]
    pairs += [(f"{hf}.self_attn_layer_norm.{h}", f"{ours}.attn_ln.{c}") for h, c in _NORM]
    if cross:
        pairs += [(f"{hf}.encoder_attn.{h}", f"{ours}.cross_attn.{c}") for h, c in _ATTENTION]
        pairs += [
            (f"{hf}.encoder_attn_layer_norm.{h}", f"{ours}.cross_attn_ln.{c}") for h, c in _NORM
        ]
    pairs += [(f"{hf}.fc1.{h}", f"{ours}.mlp.0.{c}") for h, c in _NORM]
    pairs += [(f"{hf}.fc2.{h}", f"{ours}.mlp.2.{c}") for h, c in _NORM]
    pairs += [(f"{hf}.final_layer_norm.{h}", f"{ours}.mlp_ln.{c}") for h, c in _NORM]
    return pairs


def name_pairs(dims: ModelDimensions) -> list[tuple[str, str]]:
    """(Hugging Face name, openai-whisper name) for every tensor of a model of ``dims``."""
    pairs = [
        ("model.encoder.conv1.weight", "encoder.conv1.weight"),
        ("model.encoder.conv1.bias", "encoder.conv1.bias"),
        ("model.encoder.conv2.weight", "encoder.conv2.weight"),
        ("model.encoder.conv2.bias", "encoder.conv2.bias"),
        ("model.encoder.embed_positions.weight", "encoder.positional_embedding"),
    ]
    for i in range(dims.n_audio_layer):
        pairs += _block_names("encoder", i, cross=False)
    pairs += [(f"model.encoder.layer_norm.{h}", f"encoder.ln_post.{c}") for h, c in _NORM]
    pairs += [
        ("model.decoder.embed_tokens.weight", "decoder.token_embedding.weight"),
        ("model.decoder.embed_positions.weight", "decoder.positional_embedding"),
    ]
    for i in range(dims.n_text_layer):
        pairs += _block_names("decoder", i, cross=True)
    pairs += [(f"model.decoder.layer_norm.{h}", f"decoder.ln.{c}") for h, c in _NORM]
    return pairs


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise WeightsError(f"{path}: missing") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise WeightsError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object")
    return data


def dims_from_config(config: dict, path: Path) -> ModelDimensions:
    """openai-whisper dims from a transformers ``WhisperConfig`` dict."""
    keys = {
        "n_mels": "num_mel_bins",
        "n_audio_ctx": "max_source_positions",
        "n_audio_state": "d_model",
        "n_audio_head": "encoder_attention_heads",
        "n_audio_layer": "encoder_layers",
        "n_vocab": "vocab_size",
        "n_text_ctx": "max_target_positions",
        "n_text_state": "d_model",
        "n_text_head": "decoder_attention_heads",
        "n_text_layer": "decoder_layers",
    }
    if config.get("model_type", "whisper") != "whisper":
        raise WeightsError(f"{path}: model_type is {config.get('model_type')!r}, not 'whisper'")
    missing = sorted({hf for hf in keys.values() if hf not in config})
    if missing:
        raise WeightsError(f"{path}: config lacks {', '.join(missing)}")
    return ModelDimensions(**{ours: int(config[hf]) for ours, hf in keys.items()})


def _safetensors_files(folder: Path) -> list[Path]:
    if (folder / WEIGHTS_FILE).is_file():
        return [folder / WEIGHTS_FILE]
    index = _read_json(folder / INDEX_FILE)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise WeightsError(f"{folder / INDEX_FILE}: no weight_map")
    files = [folder / name for name in dict.fromkeys(weight_map.values())]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise WeightsError(f"{folder / INDEX_FILE}: shard(s) missing: {', '.join(missing)}")
    return files


def _load_tensors(files: list[Path]) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                    tensor = handle.get_tensor(key)
                    if tensor.dtype == torch.bfloat16:
                        tensor = tensor.float()
                    tensors[re.sub(r"^(?!model\.|proj_out\.)", "model.", key)] = tensor.numpy()
        except (SafetensorError, OSError) as error:
            raise WeightsError(f"{path}: cannot read safetensors ({error})") from error
    return tensors


def read_huggingface(folder: str | Path, name: str | None = None) -> WhisperWeights:
    """Canonical weights from a Hugging Face Whisper folder (``config.json`` + safetensors)."""
    folder = Path(folder)
    config = _read_json(folder / CONFIG_FILE)
    dims = dims_from_config(config, folder / CONFIG_FILE)
    files = _safetensors_files(folder)
    hf = _load_tensors(files)
    source = str(folder)
    tensors: dict[str, np.ndarray] = {}
    for hf_name, ours in name_pairs(dims):
        if hf_name not in hf:
            raise WeightsError(f"{source}: missing tensor {hf_name!r}")
        tensors[ours] = hf.pop(hf_name)
    for key in [k for k in hf if re.search(r"\.k_proj\.bias$", k)]:
        if np.any(hf.pop(key) != 0):
            raise WeightsError(
                f"{source}: {key} is not zero; Whisper's key projections have no bias"
            )
    projection = hf.pop("proj_out.weight", None)
    if projection is not None and not np.array_equal(
        projection, tensors["decoder.token_embedding.weight"]
    ):
        raise WeightsError(f"{source}: proj_out.weight is not tied to the token embedding")
    if hf:
        raise WeightsError(f"{source}: unexpected tensors: {', '.join(sorted(hf)[:5])}")
    generation = folder / GENERATION_CONFIG_FILE
    heads = _read_json(generation).get("alignment_heads") if generation.is_file() else None
    heads = heads or config.get("alignment_heads")
    return WhisperWeights(
        name=name or guess_model_name(dims) or folder.name,
        dims=dims,
        tensors=tensors,
        alignment_heads=[(int(a), int(b)) for a, b in heads] if heads else None,
        source=source,
        metadata={
            "format": "huggingface",
            "source_checksum": file_sha256(files),
            "source_dtype": ",".join(sorted({str(a.dtype) for a in tensors.values()})),
        },
    )


def huggingface_config(weights: WhisperWeights) -> tuple[dict, dict]:
    """``config.json`` and ``generation_config.json`` contents for ``weights``."""
    dims = weights.dims
    tokens = tokenizer_info(dims)
    eot, sot = tokens["eot"], tokens["sot"]
    dtype = {str(a.dtype) for a in weights.tensors.values()}
    config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "vocab_size": dims.n_vocab,
        "num_mel_bins": dims.n_mels,
        "d_model": dims.n_audio_state,
        "encoder_layers": dims.n_audio_layer,
        "encoder_attention_heads": dims.n_audio_head,
        "encoder_ffn_dim": 4 * dims.n_audio_state,
        "decoder_layers": dims.n_text_layer,
        "decoder_attention_heads": dims.n_text_head,
        "decoder_ffn_dim": 4 * dims.n_text_state,
        "max_source_positions": dims.n_audio_ctx,
        "max_target_positions": dims.n_text_ctx,
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": True,
        "is_encoder_decoder": True,
        "use_cache": True,
        "bos_token_id": 50257,  # as in openai/whisper-*: <|endoftext|> or <|startoftranscript|>
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "begin_suppress_tokens": [220, eot],
        "torch_dtype": "float16" if dtype == {"float16"} else "float32",
    }
    generation = {
        "decoder_start_token_id": sot,
        "bos_token_id": 50257,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "begin_suppress_tokens": [220, eot],
        "max_length": dims.n_text_ctx,
        "is_multilingual": dims.is_multilingual,
        "no_timestamps_token_id": tokens["no_timestamps"],
    }
    if weights.alignment_heads:
        generation["alignment_heads"] = [list(h) for h in weights.alignment_heads]
    return config, generation


def write_huggingface(weights: WhisperWeights, folder: str | Path, overwrite: bool = False) -> Path:
    """Export ``weights`` as a Hugging Face Whisper folder (one safetensors file), atomically."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise WeightsError(f"{folder}: exists and is not empty (pass overwrite=True)")
    replacing = overwrite and folder.is_dir() and any(folder.iterdir())
    if replacing and not (folder / CONFIG_FILE).is_file():
        raise WeightsError(f"{folder}: not a Hugging Face model folder; refusing to replace it")
    config, generation = huggingface_config(weights)
    with atomic_folder(folder, overwrite=True) as partial:
        tensors = {
            hf: np.ascontiguousarray(weights.tensors[ours]) for hf, ours in name_pairs(weights.dims)
        }
        save_file(tensors, str(partial / WEIGHTS_FILE), metadata={"format": "pt"})
        (partial / WEIGHTS_FILE).chmod(0o644)
        (partial / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        (partial / GENERATION_CONFIG_FILE).write_text(json.dumps(generation, indent=2) + "\n")
    return folder
