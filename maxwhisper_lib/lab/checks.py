"""Per-component checks of the MAX graphs against openai-whisper's PyTorch model (same weights).

Every component runs on MAX and on the reference with identical inputs, fresh random ones and
real ones (the log-mel of a clip and a real prompt), and is scored by max abs error and relative
error ``||out - ref|| / ||ref||``. The block-level graphs (stem, encoder block, decoder block)
compile together once, as one module, and are bound to each layer's weights in turn.
:func:`assert_all_passed` raises when a check fails, so notebooks and papermill stop loudly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from max.driver import Buffer
from max.dtype import DType
from max.engine import CompiledModel, Model
from max.graph import Module

from ..checkpoints.canonical import WhisperWeights
from ..decoding.reference import TorchBackend
from ..engine import runtime
from ..engine.graphs.custom_ops import (
    KERNEL_EXTENSIONS,
    build_attention_int8_graph,
    build_cross_attention_graph,
    build_int8_graph,
    build_rows_graph,
    build_self_attention_graph,
)
from ..engine.graphs.decoder import DECODER_BLOCK, build_decoder_block_graph, self_attention_mask
from ..engine.graphs.encoder import ENCODER_BLOCK, build_encoder_block_graph, build_stem_graph
from ..engine.model import MaxWhisper
from ..engine.quantization import int8_linear_reference, quantize_linear
from ..engine.runtime import host_float32
from ..engine.weight_mapping import TOKEN_EMBEDDING, select_block
from .int8_attention import int8_attention_reference

TOLERANCES = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 5e-2}
"""Largest relative error that passes, per dtype (half precisions are reported, looser)."""

GPU_FLOAT32_TOLERANCE = 1e-2
"""float32 on an NVIDIA GPU: MAX's matmuls and convolutions there round their inputs to TF32
(10-bit mantissas, relative rounding 2^-11 = 4.9e-4). Measured on an H200: 5e-4 for the conv stem,
up to 2.7e-3 through the decoder's blocks, where the CPU's float32 stays under 3e-5; a broken
kernel is off by order 1. Greedy tokens stayed identical to openai-whisper on every dev clip."""


def tolerance_for(dtype_name: str, device_name: str) -> float:
    """The relative error that passes for MAX's ``dtype_name`` on ``device_name``."""
    if dtype_name == "float32" and device_name != "cpu":
        return GPU_FLOAT32_TOLERANCE
    return TOLERANCES[dtype_name]


ROW_KERNEL_TOLERANCE = 1e-6
"""The Mojo row kernels against the float64 product of the same stored values: float32
accumulation only (float16 weights are widened exactly)."""

INT8_TOLERANCE = 1e-1
"""int8 products against float32 on the same weights: what per-channel int8 weights and
per-row int8 activations cost (1e-2 to 6e-2 measured, the logits projection the most); a broken
kernel (wrong packing, a shift not undone) is off by order 1. Its exact bound is the NumPy model
of the quantized arithmetic (``ROW_KERNEL_TOLERANCE``)."""

INT8_ATTENTION_TOLERANCE = 1.5e-1
"""The int8 mode's encoder self-attention against float32 attention on the same real
activations: int8 queries and smoothed keys per token, 7-bit probabilities and per-channel int8
values cost 2.7% on average and 9% at worst (the last block of tiny.en, over the 8 dev clips:
``lab/int8_attention.py``; 6 of 7 transcripts stay float32's, WER 5.8% against 6.5%); a broken
kernel is off by order 1. Its tight bound is the NumPy model (``INT8_ATTENTION_MODEL_TOLERANCE``)."""

INT8_ATTENTION_MODEL_TOLERANCE = 1e-5
"""The int8 attention kernel against its NumPy model: the integer sums agree exactly and so does
the kernel's ``2^x`` (the same float32 operations), so every 7-bit probability is the model's;
only the order of each row's float32 total differs (measured 2.9e-7 on random activations); a
wrong packing or scale is off by 1e-2 or more."""

INT8_CHECK_LAYERS = (
    ("encoder.blocks.0.attn.qkv", 1500),
    ("encoder.blocks.0.mlp.fc2", 1500),
    ("decoder.blocks.0.attn.qkv", 1),
    ("decoder.blocks.0.mlp.fc1", 5),
    ("decoder.blocks.0.mlp.fc2", 1),
    ("logits", 1),
    ("logits", 5),
)
"""(layer, activation rows): encoder layers over a window, decoder layers per token / 5 beams."""

ROW_KERNEL_LAYERS = (
    "attn.qkv",
    "attn.out",
    "cross_attn.query",
    "cross_attn.out",
    "mlp.fc1",
    "mlp.fc2",
)


class KernelCheckError(AssertionError):
    """A MAX component disagrees with the reference beyond tolerance (or produced NaN)."""


@dataclass
class CheckResult:
    """One component on one input: errors against the reference, and what it cost."""

    component: str
    inputs: str
    graph: str
    shape: tuple[int, ...]
    max_abs_error: float
    relative_error: float
    tolerance: float
    compile_seconds: float
    run_seconds: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.relative_error) and self.relative_error < self.tolerance)

    def as_row(self) -> dict:
        return {**asdict(self), "shape": "x".join(map(str, self.shape)), "passed": self.passed}


def compare(output: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(max abs error, relative error); NaN anywhere in the output gives NaN errors."""
    output = np.asarray(output, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if output.shape != reference.shape:
        raise KernelCheckError(f"shape {output.shape} differs from the reference {reference.shape}")
    if not np.all(np.isfinite(output)):
        return float("nan"), float("nan")
    diff = output - reference
    return float(np.abs(diff).max()), float(np.linalg.norm(diff) / np.linalg.norm(reference))


def cross_attention_reference(q, k, v, rows) -> np.ndarray:
    """openai-whisper's attention in float64: softmax(q k^T / sqrt(dh)) v per head, sequence
    ``b`` over window ``rows[b]`` of ``k``/``v`` ``(windows, heads, ctx, dh)``."""
    b, n, width = q.shape
    heads, dh = k.shape[1], k.shape[3]
    qh = q.astype(np.float64).reshape(b, n, heads, dh).transpose(0, 2, 1, 3)
    kh, vh = k[rows].astype(np.float64), v[rows].astype(np.float64)
    scores = qh @ kh.transpose(0, 1, 3, 2) / np.sqrt(dh)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return (weights @ vh).transpose(0, 2, 1, 3).reshape(b, n, width)


def causal_attention_reference(qkv_steps: Sequence[np.ndarray], heads: int) -> np.ndarray:
    """float64 causal self-attention of the last step's positions over every position so far;
    each step is a fused ``(b, n, 3 * width)`` projection (queries, keys, values)."""
    q, k, v = np.split(np.concatenate(qkv_steps, axis=1).astype(np.float64), 3, axis=-1)
    b, total, width = q.shape
    n, dh = qkv_steps[-1].shape[1], width // heads

    def split(x):
        return x.reshape(b, total, heads, dh).transpose(0, 2, 1, 3)

    scores = split(q)[:, :, total - n :] @ split(k).transpose(0, 1, 3, 2) / np.sqrt(dh)
    visible = np.arange(total)[None, :] <= np.arange(total - n, total)[:, None]
    scores = np.where(visible, scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return (weights @ split(v)).transpose(0, 2, 1, 3).reshape(b, n, width)


def attention_reference(qkv: np.ndarray, heads: int) -> np.ndarray:
    """float64 self-attention without a mask (the encoder's) of a fused ``(b, T, 3 * width)``
    projection -> ``(b, T, width)``."""
    q, k, v = np.split(np.asarray(qkv, np.float64), 3, axis=-1)
    b, total, width = q.shape
    dh = width // heads

    def split(x):
        return x.reshape(b, total, heads, dh).transpose(0, 2, 1, 3)

    scores = split(q) @ split(k).transpose(0, 1, 3, 2) / np.sqrt(dh)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return (weights @ split(v)).transpose(0, 2, 1, 3).reshape(b, total, width)


class KernelChecks:
    """Runs the component checks of one model on one device/dtype."""

    def __init__(
        self,
        weights: WhisperWeights,
        device: str = "auto",
        dtype: str = "float32",
        seed: int = 0,
        model: MaxWhisper | None = None,
    ) -> None:
        self.model = model or MaxWhisper(weights, device=device, dtype=dtype)
        self.dims = weights.dims
        self.torch = TorchBackend(weights)
        self.reference = self.torch.model
        self.tolerance = tolerance_for(self.model.dtype_name, self.model.device_name)
        self.rng = np.random.default_rng(seed)
        self.results: list[CheckResult] = []
        self._graphs: dict[object, object] = {}  # kernel graphs: (weight dtype, bias) or kind
        self._blocks: tuple[CompiledModel, dict[str, str]] | None = None  # module, graph names

    # -- helpers --------------------------------------------------------------------------
    def _record(
        self, component, inputs, graph, out, ref, compile_s: float, run_s: float, tolerance=None
    ):
        max_abs, rel = compare(out, ref)
        result = CheckResult(
            component,
            inputs,
            graph,
            tuple(np.shape(ref)),
            max_abs,
            rel,
            self.tolerance if tolerance is None else tolerance,
            compile_s,
            run_s,
        )
        self.results.append(result)
        return result

    def _timed(self, fn: Callable[[], object]) -> tuple[object, float]:
        start = time.perf_counter()
        value = fn()
        return value, time.perf_counter() - start

    def _block_models(self, layer: int) -> tuple[dict[str, Model], float]:
        """The stem, encoder-block and decoder-block graphs with encoder block ``layer``'s and
        decoder block ``layer``'s weights bound (each clipped to its stack's depth); they compile
        together once (one module: the kernels they share are elaborated once), then each layer
        only binds its weights. Returns the models by kind and the compile seconds (0 after the
        first call)."""
        compile_s = 0.0
        session = runtime.get_session(self.model.device_name)  # one per device and process
        if self._blocks is None:
            device = runtime.device_ref(self.model.device_name)
            args = (self.dims, self.model.dtype, device)
            module = Module()
            names = {
                "stem": build_stem_graph(*args, module=module).name,
                ENCODER_BLOCK: build_encoder_block_graph(*args, module=module).name,
                DECODER_BLOCK: build_decoder_block_graph(
                    *args, row_dtype=self.model.row_dtype, module=module
                ).name,
            }
            extensions = KERNEL_EXTENSIONS if self.model.row_kernels else []
            compiled, compile_s = self._timed(
                lambda: session.compile(module, custom_extensions=list(extensions))
            )
            self._blocks = (compiled, names)
        compiled, names = self._blocks
        encoder = min(layer, self.dims.n_audio_layer - 1)
        decoder = min(layer, self.dims.n_text_layer - 1)
        registry = {
            **self.model.registry,
            **select_block(self.model.registry, f"encoder.blocks.{encoder}", ENCODER_BLOCK),
            **select_block(self.model.registry, f"decoder.blocks.{decoder}", DECODER_BLOCK),
        }
        models = session.init_all(compiled, weights_registry=registry)
        return {kind: models[name] for kind, name in names.items()}, compile_s

    def _execute_copy(self, model, *values) -> np.ndarray:
        """Run ``model`` on host arrays (or buffers) and copy its first output to the host while
        every input and output buffer is still referenced (no view of memory MAX may reuse)."""
        arrays = [v if isinstance(v, Buffer) else np.array(v) for v in values]  # owned copies
        inputs = [v if isinstance(v, Buffer) else Buffer.from_numpy(v) for v in arrays]
        outputs = model.execute(*inputs)
        result = np.array(host_float32(outputs[0]), dtype=np.float32, copy=True)
        del outputs, inputs, arrays
        return result

    def _input(self, array: np.ndarray):
        return self.model._activation_input(array)

    def _out(self, buffer) -> np.ndarray:
        return host_float32(buffer)

    def _random(self, *shape: int, scale: float = 1.0) -> np.ndarray:
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    # -- encoder --------------------------------------------------------------------------
    @torch.no_grad()
    def check_encoder(self, mel: np.ndarray, label: str) -> None:
        """Conv stem, every block (fed the reference's own input to it) and the whole encoder."""
        enc = self.reference.encoder
        x_ref = torch.from_numpy(mel)
        stem_ref = torch.nn.functional.gelu(enc.conv2(torch.nn.functional.gelu(enc.conv1(x_ref))))
        models, compile_s = self._block_models(0)
        stem = models["stem"]
        out, run_s = self._timed(lambda: self._out(stem.execute(self._input(mel))[0]))
        self._record(
            "encoder.conv_stem",
            label,
            "stem",
            out,
            stem_ref.permute(0, 2, 1).numpy(),
            compile_s,
            run_s,
        )

        x = stem_ref.permute(0, 2, 1) + enc.positional_embedding
        for i, block in enumerate(enc.blocks):
            models, compile_s = self._block_models(i)
            graph = models[ENCODER_BLOCK]
            block_in = x.numpy()
            out, run_s = self._timed(
                lambda g=graph, b=block_in: self._out(g.execute(self._input(b))[0])
            )
            x = block(x)
            self._record(
                f"encoder.blocks.{i}", label, "encoder_block", out, x.numpy(), compile_s, run_s
            )

        compile_s = (
            self.model.compile_seconds.get("encoder")
            or self._timed(lambda: self.model.compiled("encoder"))[1]
        )
        out, run_s = self._timed(lambda: self.model.embed_audio(mel).numpy())
        self._record("encoder", label, "encoder", out, enc(x_ref).numpy(), compile_s, run_s)

    # -- decoder --------------------------------------------------------------------------
    @torch.no_grad()
    def check_decoder_blocks(self, tokens: np.ndarray, features: np.ndarray, label: str) -> None:
        """Every decoder block on the reference's own input to it, with full causal attention."""
        dec = self.reference.decoder
        n = tokens.shape[1]
        xa = torch.from_numpy(features)
        x = dec.token_embedding(torch.from_numpy(tokens)) + dec.positional_embedding[:n]
        mask = self_attention_mask(0, n)
        for i, block in enumerate(dec.blocks):
            models, compile_s = self._block_models(i)
            graph = models[DECODER_BLOCK]
            block_in = x.numpy()
            out, run_s = self._timed(
                lambda g=graph, b=block_in: self._out(
                    g.execute(self._input(b), self._input(features), self.model.to_device(mask))[0]
                )
            )
            x = block(x, xa, mask=dec.mask)
            self._record(
                f"decoder.blocks.{i}", label, "decoder_block", out, x.numpy(), compile_s, run_s
            )

    @torch.no_grad()
    def check_decoding(self, mel: np.ndarray, tokens: np.ndarray, label: str) -> None:
        """Prompt logits in one call, then KV-cached steps against full-sequence logits."""
        n_prompt = min(3, tokens.shape[1] - 1)
        reference = self.reference.decoder(
            torch.from_numpy(tokens), self.reference.encoder(torch.from_numpy(mel))
        ).numpy()
        compile_s = sum(
            self._timed(lambda name=name: self.model.compiled(name))[1]
            for name in ("cross_kv", "decoder_step")
        )
        audio = self.model.embed_audio(mel)
        rows = np.arange(mel.shape[0])
        session = self.model.start_decoding(audio, rows)
        positions = tuple(range(tokens.shape[1]))
        full, run_s = self._timed(lambda: session.logits(tokens, positions))
        self._record(
            "decoder.logits (full sequence)",
            label,
            "cross_kv + decoder_step",
            full,
            reference,
            compile_s,
            run_s,
        )

        session = self.model.start_decoding(audio, rows)
        start = time.perf_counter()
        steps = [session.logits(tokens[:, :n_prompt], tuple(range(n_prompt)))]
        steps += [session.logits(tokens[:, i : i + 1]) for i in range(n_prompt, tokens.shape[1])]
        run_s = time.perf_counter() - start
        incremental = np.concatenate(steps, axis=1)
        component = f"decoder.logits (prompt + {tokens.shape[1] - n_prompt} cached steps)"
        self._record(component, label, "decoder_step", incremental, reference, 0.0, run_s)
        self._record(
            "cached steps vs full sequence on MAX",
            label,
            "decoder_step",
            incremental,
            full,
            0.0,
            0.0,
        )

    @torch.no_grad()
    def check_alignment(self, mel: np.ndarray, tokens: np.ndarray, label: str) -> None:
        """Cross-attention scores for word timestamps (one uncached pass)."""
        ref_logits, ref_scores = self.torch.alignment(self.torch.embed_audio(mel[:1]), 0, tokens[0])
        _, compile_s = self._timed(lambda: self.model.compiled("alignment"))
        (logits, scores), run_s = self._timed(
            lambda: self.model.alignment(self.model.embed_audio(mel[:1]), 0, tokens[0])
        )
        self._record(
            "alignment.cross_attention_scores",
            label,
            "alignment",
            scores,
            ref_scores,
            compile_s,
            run_s,
        )
        self._record("alignment.logits", label, "alignment", logits, ref_logits, 0.0, 0.0)

    # -- the Mojo row kernels -------------------------------------------------------------
    def check_row_kernels(self, rows: Sequence[int] = (1, 5)) -> None:
        """Every decoder linear layer of block 0 and the logits projection, as the row kernels
        run them on the model's own stored weights, against NumPy's float64 product of the same
        values, for ``rows`` activation rows (one token; five beams). CPU row kernels only."""
        if not self.model.row_kernels:
            return
        registry = self.model.registry
        names = [f"decoder.blocks.0.{layer}" for layer in ROW_KERNEL_LAYERS] + ["logits"]
        for name in names:
            weight_name = TOKEN_EMBEDDING if name == "logits" else f"{name}.weight"
            weight = np.asarray(registry[weight_name])
            bias = None if name == "logits" else np.asarray(registry[f"{name}.bias"])
            graph_key = (weight.dtype.name, bias is not None)
            compile_s = 0.0
            if graph_key not in self._graphs:
                graph = build_rows_graph(DType.from_numpy(weight.dtype), bias is not None)
                self._graphs[graph_key], compile_s = self._timed(
                    lambda g=graph: runtime.compile_graph(g, "cpu")
                )
            model = self._graphs[graph_key]
            for n_rows in rows:
                x = self._random(n_rows, weight.shape[1])
                inputs = [x, weight] + ([] if bias is None else [bias])
                out, run_s = self._timed(
                    lambda m=model, i=inputs: host_float32(
                        m.execute(*(self.model.to_device(a) for a in i))[0]
                    )
                )
                ref = x.astype(np.float64) @ weight.astype(np.float64).T
                if bias is not None:
                    ref = ref + bias.astype(np.float64)
                self._record(
                    f"row kernel {name} ({weight.dtype.name} {weight.shape[0]}x{weight.shape[1]})",
                    f"{n_rows} row{'s' if n_rows > 1 else ''}",
                    f"{'linear' if bias is not None else 'matmul'}_rows ({weight.dtype.name})",
                    out,
                    ref,
                    compile_s,
                    run_s,
                    ROW_KERNEL_TOLERANCE,
                )
                compile_s = 0.0

    def check_int8_kernels(self, layers: Sequence[tuple[str, int]] = INT8_CHECK_LAYERS) -> None:
        """The int8 kernel on this model's weights quantized per output channel (the int8
        mode's): against the NumPy model of the same quantized arithmetic (exact up to float32
        rounding) and against the float32 product (the int8 error, shown and bounded). CPU."""
        if self.model.device_name != "cpu":
            return
        tensors = self._source_tensors()
        for name, n_rows in layers:
            weight = tensors[name]
            bias = None if name == "logits" else tensors[f"{name}.bias"]
            quantized = quantize_linear(weight)
            key = ("int8", None if bias is not None else quantized.out_features)
            compile_s = 0.0
            if key not in self._graphs:
                graph = build_int8_graph(bias is not None, quantized.out_features)
                self._graphs[key], compile_s = self._timed(
                    lambda g=graph: runtime.compile_graph(g, "cpu")
                )
            x = self._random(n_rows, weight.shape[1])
            inputs = [x, quantized.packed, quantized.scale, quantized.weight_sum]
            inputs += [] if bias is None else [bias]
            out, run_s = self._timed(
                lambda m=self._graphs[key], i=inputs: self._execute_copy(m, *i)
            )
            label = f"int8 kernel {name} ({weight.shape[0]}x{weight.shape[1]})"
            inputs_label = f"{n_rows} row{'s' if n_rows > 1 else ''}"
            graph_name = "linear_int8" if bias is not None else "matmul_int8"
            self._record(
                label + " vs NumPy int8 model",
                inputs_label,
                graph_name,
                out,
                int8_linear_reference(x, quantized, bias),
                compile_s,
                run_s,
                ROW_KERNEL_TOLERANCE,
            )
            exact = x.astype(np.float64) @ weight.astype(np.float64).T
            if bias is not None:
                exact = exact + bias
            self._record(
                label + " vs float32",
                inputs_label,
                graph_name,
                out,
                exact,
                0.0,
                run_s,
                INT8_TOLERANCE,
            )

    def check_int8_attention(self, mel: np.ndarray, label: str) -> None:
        """The int8 mode's encoder self-attention kernel on real activations (the fused query,
        key and value projections of every encoder block, from the reference on ``mel``):
        against the NumPy model of its arithmetic and against float32 attention. CPU."""
        if self.model.device_name != "cpu":
            return
        dims = self.dims
        heads, width = dims.n_audio_head, dims.n_audio_state
        fused: list[np.ndarray] = []
        hooks = []
        for block in self.reference.encoder.blocks:
            parts: dict[str, np.ndarray] = {}
            for name in ("query", "key", "value"):

                def keep(_, __, output, name=name, parts=parts):
                    parts[name] = output.detach().float().numpy()
                    if len(parts) == 3:
                        fused.append(
                            np.concatenate([parts[n] for n in ("query", "key", "value")], -1)
                        )
                        parts.clear()

                hooks.append(getattr(block.attn, name).register_forward_hook(keep))
        try:
            with torch.no_grad():
                self.reference.encoder(torch.from_numpy(mel))
        finally:
            for hook in hooks:
                hook.remove()
        compile_s = 0.0
        if "int8_attention" not in self._graphs:
            graph = build_attention_int8_graph(heads, width // heads)
            self._graphs["int8_attention"], compile_s = self._timed(
                lambda: runtime.compile_graph(graph, "cpu")
            )
        for layer, qkv in enumerate(fused):
            qkv = np.ascontiguousarray(qkv, dtype=np.float32)
            out, run_s = self._timed(
                lambda q=qkv: self._execute_copy(self._graphs["int8_attention"], q)
            )
            component = f"int8 attention kernel, encoder block {layer}"
            self._record(
                component + " vs NumPy int8 model",
                label,
                "self_attention_int8",
                out,
                int8_attention_reference(qkv, heads),
                compile_s,
                run_s,
                INT8_ATTENTION_MODEL_TOLERANCE,
            )
            self._record(
                component + " vs float32",
                label,
                "self_attention_int8",
                out,
                attention_reference(qkv, heads),
                0.0,
                run_s,
                INT8_ATTENTION_TOLERANCE,
            )
            compile_s = 0.0

    def _source_tensors(self) -> dict[str, np.ndarray]:
        """The int8 check layers' weights ``(out, in)`` and biases, float32, from the registry."""
        registry, out = self.model.registry, {}
        for name, _ in INT8_CHECK_LAYERS:
            if name == "logits":
                out[name] = np.asarray(registry[TOKEN_EMBEDDING], np.float32)
                continue
            weight = np.asarray(registry[f"{name}.weight"], np.float32)
            if weight.ndim != 2:
                raise ValueError("the int8 checks take a float model's registry")
            out[name] = weight.T if name.startswith("encoder.") else weight
            out[f"{name}.bias"] = np.asarray(registry[f"{name}.bias"], np.float32)
        return out

    def check_attention_kernels(self, rows: Sequence[int] = (1, 5), prompt: int = 3) -> None:
        """The step's attention kernels at the model's shapes against NumPy float64: the cached
        self-attention over a ``prompt`` then one more token (keys/values it writes itself), and
        cross-attention over one window shared by ``rows`` sequences. CPU row kernels only."""
        if not self.model.row_kernels:
            return
        dims = self.dims
        heads, width = dims.n_text_head, dims.n_text_state
        head_width = width // heads
        graphs = {
            "self": build_self_attention_graph(heads, head_width, dims.n_text_ctx),
            "cross": build_cross_attention_graph(heads, head_width),
            "cross_f16": build_cross_attention_graph(heads, head_width, DType.float16),
        }
        for n_rows in rows:
            compile_s = {}
            for kind, graph in graphs.items():
                if kind not in self._graphs:
                    self._graphs[kind], compile_s[kind] = self._timed(
                        lambda g=graph: runtime.compile_graph(g, "cpu")
                    )
            device = runtime.get_device("cpu")
            shape = [n_rows, heads, dims.n_text_ctx, head_width]
            cache = [runtime.zeros(shape, DType.float32, device) for _ in range(2)]
            steps = [self._random(n_rows, n, 3 * width) for n in (prompt, 1)]
            offset = 0
            for step in steps:
                out, run_s = self._timed(
                    lambda s=step, o=offset, c=cache: self._execute_copy(
                        self._graphs["self"], s, np.array(o, np.int64), *c
                    )
                )
                offset += step.shape[1]
            self._record(
                f"attention kernel, cached self-attention ({heads} heads x {head_width})",
                f"{n_rows} seq, {prompt} cached + 1",
                "self_attention_cached",
                out,
                causal_attention_reference(steps, heads),
                compile_s.get("self", 0.0),
                run_s,
                ROW_KERNEL_TOLERANCE,
            )
            q = self._random(n_rows, 1, width)
            k, v = (self._random(1, heads, dims.n_audio_ctx, head_width) for _ in range(2))
            shared = np.zeros(n_rows, np.int64)
            out, run_s = self._timed(
                lambda i=(q, k, v, shared): self._execute_copy(self._graphs["cross"], *i)
            )
            self._record(
                f"attention kernel, cross-attention ({heads} heads x {dims.n_audio_ctx})",
                f"{n_rows} seq, 1 window",
                "cross_attention_rows",
                out,
                cross_attention_reference(q, k, v, shared),
                compile_s.get("cross", 0.0),
                run_s,
                ROW_KERNEL_TOLERANCE,
            )
            k16, v16 = (a.astype(np.float16) for a in (k, v))  # as the int8 mode stores them
            out, run_s = self._timed(
                lambda i=(q, k16, v16, shared): self._execute_copy(self._graphs["cross_f16"], *i)
            )
            self._record(
                f"attention kernel, cross-attention over float16 keys/values ({heads} heads x "
                f"{dims.n_audio_ctx}; the int8 mode)",
                f"{n_rows} seq, 1 window",
                "cross_attention_rows_f16",
                out,
                cross_attention_reference(
                    q, k16.astype(np.float32), v16.astype(np.float32), shared
                ),
                compile_s.get("cross_f16", 0.0),
                run_s,
                ROW_KERNEL_TOLERANCE,
            )

    # -- all ------------------------------------------------------------------------------
    def run(self, mel: np.ndarray, tokens: np.ndarray, batch: int = 2) -> list[CheckResult]:
        """All checks on random inputs (``batch`` rows) and on the real ``mel``/``tokens``."""
        dims = self.dims
        frames = 2 * dims.n_audio_ctx
        real_mel = np.asarray(mel, dtype=np.float32).reshape(1, dims.n_mels, frames)
        real_tokens = np.asarray(tokens, dtype=np.int64).reshape(1, -1)
        random_mel = self._random(batch, dims.n_mels, frames)
        random_tokens = self.rng.integers(0, dims.n_vocab, size=(batch, real_tokens.shape[1]))
        random_features = self._random(batch, dims.n_audio_ctx, dims.n_audio_state)
        with torch.no_grad():
            real_features = self.reference.encoder(torch.from_numpy(real_mel)).numpy()

        self.check_encoder(random_mel, "random")
        self.check_encoder(real_mel, "real")
        self.check_decoder_blocks(random_tokens, random_features, "random")
        self.check_decoder_blocks(real_tokens, real_features, "real")
        self.check_decoding(random_mel, random_tokens, "random")
        self.check_decoding(real_mel, real_tokens, "real")
        self.check_alignment(real_mel, real_tokens, "real")
        self.check_row_kernels()
        self.check_attention_kernels()
        self.check_int8_kernels()
        self.check_int8_attention(real_mel, "real")
        return self.results


def clip_window(clip_id: str, n_mels: int) -> np.ndarray:
    """A manifest clip's first 30-s log-mel window ``(n_mels, 3000)`` float32, by
    openai-whisper's front end."""
    from ..audio.features import log_mel_spectrogram_reference, pad_or_trim
    from ..audio.load import load_audio
    from .manifest import clip

    audio = load_audio(clip(clip_id).path)
    return pad_or_trim(log_mel_spectrogram_reference(audio, n_mels)).astype(np.float32)


def real_inputs(weights: WhisperWeights, clip_id: str = "jfk", min_steps: int = 24):
    """A clip's 30 s log-mel window ``(n_mels, 3000)`` and a real prompt: the start-of-transcript
    tokens followed by the clip's reference text (at least ``min_steps`` tokens after the first
    three, so the cached-decoding check runs that many steps)."""
    from ..decoding.tokenizer import get_tokenizer
    from .manifest import clip

    item = clip(clip_id)
    mel = clip_window(clip_id, weights.dims.n_mels)
    tokenizer = get_tokenizer(weights.dims, language="en", task="transcribe")
    tokens = list(tokenizer.sot_sequence_including_notimestamps)
    tokens += tokenizer.encode(" " + item.reference.strip())
    if len(tokens) < 3 + min_steps:
        raise ValueError(f"clip {clip_id!r}: reference too short for {min_steps} decoding steps")
    return mel, np.array(tokens, dtype=np.int64)


def results_table(results: list[CheckResult]):
    """The results as a pandas DataFrame, one row per component and input."""
    import pandas as pd

    return pd.DataFrame([r.as_row() for r in results])


def graph_times(results: list[CheckResult]):
    """Per graph: its compile (or cache load) seconds and one run, from its first use."""
    rows = results_table(results)
    rows = rows[rows["compile_seconds"] > 0].drop_duplicates("graph", keep="first")
    return rows[["graph", "compile_seconds", "run_seconds"]].reset_index(drop=True)


def assert_all_passed(results: list[CheckResult]) -> None:
    """Raise :class:`KernelCheckError` naming every failed component."""
    failed = [r for r in results if not r.passed]
    if failed:
        lines = [
            f"{r.component} [{r.inputs}]: relative error {r.relative_error:.3g} "
            f"(tolerance {r.tolerance:g})"
            for r in failed
        ]
        raise KernelCheckError("MAX components disagree with the reference:\n" + "\n".join(lines))
