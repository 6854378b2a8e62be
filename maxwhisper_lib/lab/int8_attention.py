"""The encoder's self-attention in int8, modelled before it is built (issue 38).

:func:`int8_attention` is the arithmetic the Mojo kernel is to do, in PyTorch with exact integer
sums: ``Q K^T`` from int8 queries and keys (each token's row quantized with its own scale, keys
first smoothed by subtracting their mean over tokens, which softmax does not see: SageAttention,
Zhang et al. 2024), softmax in float32, and ``P V`` either in float32 or from 7-bit
probabilities (each row's unnormalised ``exp``, top 1, as 0 .. 127) and int8 values (a scale per
channel): the kernel's arithmetic (``engine/kernels/attention_int8.mojo``), of which
:func:`int8_attention_reference` is the NumPy model (exact integer sums).

:func:`attention_errors` measures its error against float32 on real encoder activations (the
dev clips through openai-whisper's tiny.en, every block); :func:`transcripts_with` transcribes
the dev clips with the encoder's attention replaced by it, for the WER beside float32's.

``python -m maxwhisper_lib.lab.int8_attention [--output FILE.json]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..engine.quantization import quantize_activations
from .probe_cli import probe_main

QMAX = 127


@dataclass(frozen=True)
class Int8Attention:
    """One variant: smooth the keys, and ``P V`` in ``"int8"`` or ``"float32"``."""

    smooth_keys: bool = True
    pv: str = "int8"

    @property
    def name(self) -> str:
        smooth = "smoothed K" if self.smooth_keys else "raw K"
        return f"int8 QK^T ({smooth}), P V {self.pv}"


VARIANTS = (
    Int8Attention(smooth_keys=False, pv="float32"),
    Int8Attention(smooth_keys=True, pv="float32"),
    Int8Attention(smooth_keys=True, pv="int8"),
)


def quantize_rows(x, maximum: int = QMAX):
    """Each last-axis row of ``x`` as integers (held in a float tensor) and its scale:
    ``s = max|row| / maximum``, ``q = clamp(floor(x / s + 0.5), -maximum, maximum)`` (the int8
    kernel's rounding); all-zero rows get scale 0."""
    import torch

    top = x.abs().amax(dim=-1, keepdim=True)
    inverse = torch.where(top > 0, maximum / top, torch.zeros_like(top))
    q = torch.floor(x * inverse + 0.5).clamp(-maximum, maximum)
    return q, top / maximum


def int8_attention(q, k, v, variant: Int8Attention = Int8Attention()):
    """``softmax(Q K^T / sqrt(d_h)) V`` for ``(batch, heads, T, d_h)`` float32 tensors, with the
    products as the int8 kernel is to compute them (integer sums exact: float64 products of
    integers)."""
    import torch

    scale = q.shape[-1] ** -0.5
    if variant.smooth_keys:
        k = k - k.mean(dim=-2, keepdim=True)
    qq, q_scale = quantize_rows(q)
    kq, k_scale = quantize_rows(k)
    dots = (qq.double() @ kq.double().transpose(-1, -2)).float()
    scores = dots * (q_scale * k_scale.transpose(-1, -2) * scale)
    e = torch.exp(scores - scores.amax(dim=-1, keepdim=True))  # the top one is 1
    total = e.sum(dim=-1, keepdim=True)
    if variant.pv == "float32":
        return (e / total) @ v
    # as the kernel: 0 .. 127, ties to even (AVX2's pmaddubsw needs 7 bits)
    pq = torch.round(e * QMAX)
    vq, v_scale = quantize_rows(v.transpose(-1, -2))  # a scale per channel
    return (pq.double() @ vq.double().transpose(-1, -2)).float() * (
        v_scale.transpose(-1, -2) / (QMAX * total)
    )


LOG2E = np.float32(1.4426950408889634)
EXP2_POLYNOMIAL = tuple(
    np.float32(c) for c in (0.00956887, 0.05591422, 0.24024744, 0.69312234, 0.99999928)
)
"""The kernel's degree-4 polynomial for ``2^f``, ``f`` in [-0.5, 0.5], highest power first
(fitted to the relative error: below 3e-6)."""


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray | np.float32) -> np.ndarray:
    """float32 ``a * b + c`` rounded once, as a fused multiply-add: the product of two float32
    is exact in float64, and rounding the float64 sum again to float32 differs from one rounding
    only on a tie of the second, about once in 2^29."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.float64(c)).astype(
        np.float32
    )


def exp2_kernel(x: np.ndarray) -> np.ndarray:
    """The kernel's ``2^x`` for ``x <= 0`` in float32, operation for operation: ``x`` clamped
    at -126, ``n`` = x rounded to even, the polynomial of ``f = x - n`` by fused multiply-adds,
    times ``2^n`` (exact)."""
    y = np.maximum(np.asarray(x, np.float32), np.float32(-126))
    n = np.rint(y)
    f = y - n
    p = np.full_like(f, EXP2_POLYNOMIAL[0])
    for c in EXP2_POLYNOMIAL[1:]:
        p = fma32(p, f, c)
    return np.ldexp(p, n.astype(np.int32)).astype(np.float32)


def int8_attention_reference(qkv: np.ndarray, heads: int) -> np.ndarray:
    """NumPy model of the ``self_attention_int8`` kernel: ``qkv (b, T, 3 * width)`` float32 ->
    ``(b, T, width)``. Keys smoothed (their mean over tokens taken off) and quantized per token,
    queries per token, scores from the exact integer sums; softmax in float32 (base 2, the
    kernel's :func:`exp2_kernel`); the unnormalised
    probabilities (top 1) as 0 .. 127 and the values per channel, ``P V`` from exact sums."""
    qkv = np.asarray(qkv, dtype=np.float32)
    batch, time, fused = qkv.shape
    width = fused // 3
    head_width = width // heads
    out = np.zeros((batch, time, width), np.float32)
    scale = np.float32(1) / np.sqrt(np.float32(head_width))
    for i in range(batch):
        for h in range(heads):
            cols = slice(h * head_width, (h + 1) * head_width)
            q = qkv[i, :, :width][:, cols]
            k = qkv[i, :, width : 2 * width][:, cols]
            v = qkv[i, :, 2 * width :][:, cols]
            k = k - np.cumsum(k, axis=0, dtype=np.float32)[-1] / np.float32(
                time
            )  # summed in order, as the kernel
            q_q, q_s = quantize_activations(q)
            k_q, k_s = quantize_activations(k)
            dots = (q_q.astype(np.int64) @ k_q.astype(np.int64).T).astype(np.float32)
            scores = dots * k_s[None, :]  # the query's scale (base 2) after the row's top
            q_scale = (q_s * scale * LOG2E)[:, None]
            e = exp2_kernel(fma32(scores, q_scale, -(scores.max(axis=1, keepdims=True) * q_scale)))
            total = e.sum(axis=1, dtype=np.float32)
            p_q = np.rint(e * np.float32(QMAX))  # 0 .. 127, ties to even
            v_q, v_s = quantize_activations(v.T)  # per channel
            sums = (p_q.astype(np.int64) @ v_q.astype(np.int64).T).astype(np.float32)
            out[i, :, cols] = sums * v_s[None, :] / (np.float32(QMAX) * total)[:, None]
    return out


def _reference_attention(q, k, v):
    import torch

    return torch.softmax((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5, dim=-1) @ v


def _heads(x, n_head: int):
    return x.view(*x.shape[:2], n_head, -1).permute(0, 2, 1, 3)


@contextlib.contextmanager
def encoder_attention(model, variant: Int8Attention | None) -> Iterator[list]:
    """openai-whisper ``model``'s encoder self-attention replaced by :func:`int8_attention`
    (``variant`` None: float32 as it is, but recorded); yields the list that collects each
    call's ``(q, k, v)`` (float32, heads split) when recording."""
    from whisper.model import MultiHeadAttention

    recorded: list = []
    patched = []
    for block in model.encoder.blocks:
        attention = block.attn

        def qkv_attention(q, k, v, mask=None, *, _attention=attention):
            n_head = _attention.n_head
            qh, kh, vh = (_heads(t.float(), n_head) for t in (q, k, v))
            if variant is None:
                recorded.append((qh, kh, vh))
                out = _reference_attention(qh, kh, vh)
            else:
                out = int8_attention(qh, kh, vh, variant)
            return out.permute(0, 2, 1, 3).flatten(start_dim=2).to(q.dtype), None

        attention.qkv_attention = qkv_attention
        patched.append(attention)
    try:
        yield recorded
    finally:
        for attention in patched:
            attention.qkv_attention = MultiHeadAttention.qkv_attention.__get__(attention)


def _openai_whisper(name: str):
    import whisper

    from ..checkpoints import checkpoint_path

    return whisper.load_model(str(checkpoint_path(name)), device="cpu")


def attention_errors(name: str = "tiny.en") -> dict:
    """Relative error (Frobenius) of each variant's attention output against float32, per
    encoder block, on the first 30 s of every dev clip."""
    import torch
    import whisper

    from ..audio.load import load_audio
    from .manifest import load_manifest

    model = _openai_whisper(name)
    errors: dict[str, list[list[float]]] = {v.name: [] for v in VARIANTS}
    with torch.no_grad():
        for clip in load_manifest():
            audio = whisper.pad_or_trim(torch.from_numpy(load_audio(clip.path)))
            mel = whisper.log_mel_spectrogram(audio, model.dims.n_mels)[None]
            with encoder_attention(model, None) as recorded:
                model.encoder(mel)
            for variant in VARIANTS:
                per_block = []
                for q, k, v in recorded:
                    ref = _reference_attention(q, k, v)
                    out = int8_attention(q, k, v, variant)
                    per_block.append(float((out - ref).norm() / ref.norm()))
                errors[variant.name].append(per_block)
    return {
        name: {
            "worst": round(max(max(b) for b in blocks), 5),
            "mean": round(sum(sum(b) for b in blocks) / sum(len(b) for b in blocks), 5),
            "per_block_worst": [round(max(c), 5) for c in zip(*blocks, strict=True)],
        }
        for name, blocks in errors.items()
    }


def transcripts_with(name: str, variant: Int8Attention | None) -> dict[str, str]:
    """Every dev clip with a reference, transcribed greedily by openai-whisper with the
    encoder's attention in ``variant`` (None: float32)."""
    import torch

    from ..audio.load import load_audio
    from .manifest import load_manifest

    model = _openai_whisper(name)
    texts = {}
    with torch.no_grad():
        for clip in load_manifest():
            if not clip.has_reference:
                continue
            audio = torch.from_numpy(load_audio(clip.path))
            if variant is None:
                result = model.transcribe(audio, temperature=0.0, fp16=False)
            else:
                with encoder_attention(model, variant):
                    result = model.transcribe(audio, temperature=0.0, fp16=False)
            texts[clip.id] = result["text"]
    return texts


def study(name: str = "tiny.en") -> dict:
    """The errors on real activations and the WER of each variant beside float32's."""
    from ..decoding.text import word_error_rate
    from .manifest import load_manifest

    references = {c.id: c.reference for c in load_manifest() if c.has_reference}
    ids = list(references)
    baseline = transcripts_with(name, None)
    wer = {"float32": word_error_rate([references[i] for i in ids], [baseline[i] for i in ids])}
    same = {}
    for variant in VARIANTS:
        texts = transcripts_with(name, variant)
        wer[variant.name] = word_error_rate([references[i] for i in ids], [texts[i] for i in ids])
        same[variant.name] = sum(texts[i] == baseline[i] for i in ids)
    return {
        "model": name,
        "clips": ids,
        "attention_error_vs_float32": attention_errors(name),
        "wer": {k: None if v is None else round(v, 4) for k, v in wer.items()},
        "transcripts_equal_to_float32": {k: f"{v}/{len(ids)}" for k, v in same.items()},
    }


def main(argv: list[str] | None = None) -> int:
    return probe_main("python -m maxwhisper_lib.lab.int8_attention", study, argv)


if __name__ == "__main__":
    raise SystemExit(main())
