"""MaxWhisper: Whisper's encoder and decoder compiled as MAX graphs, behind the backend protocol.

Weights are mapped once (:mod:`weight_mapping`) and bound to each graph at load time; graphs
compile on first use and come from MAX's cache afterwards (:mod:`runtime`). On the CPU the
decoder's linear layers and cross-attention run as MAX-Whisper's Mojo kernels over weights kept
at the checkpoint's precision (``row_kernels``; float16 widened exactly, float32 accumulation).
Every tensor that decoding keeps between calls (audio features, cross-attention keys/values, the
self-attention cache) stays on the model's device; only tokens go in and only requested logits
come out. Greedy decoding at temperature 0 goes further: the logit filters, the choice and their
state run in the step graph too (:mod:`maxwhisper_lib.engine.graphs.loop`,
:mod:`maxwhisper_lib.engine.greedy_loop`), and only the chosen tokens come back.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from max.driver import Buffer
from max.dtype import DType
from max.engine import Model
from max.graph import DeviceRef, Graph, Module

from ..audio.features import default_stft_dtype, mel_filters
from ..checkpoints.canonical import WhisperWeights
from ..dims import ModelDimensions
from ..errors import DecodingOptionsError
from . import compiled, machine, runtime
from .graphs import check_registry, declared_weights
from .graphs.custom_ops import KERNEL_EXTENSIONS
from .graphs.decoder import (
    DecoderStepInputs,
    build_alignment_graph,
    build_cross_kv_graph,
    build_decoder_step_graph,
    build_reorder_graph,
    cache_types,
    self_attention_mask,
)
from .graphs.encoder import build_encoder_graph
from .graphs.loop import build_decode_start_graph, build_decode_step_graph
from .graphs.mel import build_log_mel_piece_graph
from .greedy_loop import GreedyLoop, GreedyResult
from .weight_mapping import map_weights, row_weight_dtype

if TYPE_CHECKING:
    from ..audio.features import LogMelPieces, LogMelSpectrogram

GraphBuilder = Callable[[ModelDimensions, DType, DeviceRef], Graph]

DECODER_GRAPHS = frozenset({"decoder_step", "decode_start", "decode_step", "alignment"})
"""Graphs that run the decoder's layers."""
ROW_KERNEL_GRAPHS = DECODER_GRAPHS | {"reorder"}
"""Graphs built for the row kernels when the model uses them (they take ``row_dtype``)."""

INT8_GRAPHS = DECODER_GRAPHS | {"encoder", "cross_kv"}
"""Graphs whose linear layers run the int8 kernel in the int8 mode (they take ``int8``)."""

LOG_MEL_PIECE = "log_mel_piece"
"""The front end's piece graph (:meth:`maxwhisper_lib.audio.features.LogMelSpectrogram.stream`), compiled
with the model's graphs."""

GRAPHS: dict[str, GraphBuilder] = {
    "encoder": build_encoder_graph,
    "cross_kv": build_cross_kv_graph,
    "decoder_step": build_decoder_step_graph,
    "decode_start": build_decode_start_graph,
    "decode_step": build_decode_step_graph,
    "reorder": build_reorder_graph,
    "alignment": build_alignment_graph,
}

ALL_GRAPHS = (*GRAPHS, LOG_MEL_PIECE)
"""Every graph a model compiles, by our name."""


def weight_registry(
    weights: WhisperWeights, dtype: DType, rows: bool = False, int8: bool = False
) -> dict[str, object]:
    """Mapped weights as arrays MAX can bind for ``dtype`` (bfloat16 goes through torch/DLPack);
    ``rows``: the decoder's row weights at the checkpoint's precision; ``int8``: the int8 mode's
    weights quantized per output channel (see weight_mapping)."""
    if dtype == DType.bfloat16:
        return runtime.host_arrays(map_weights(weights), dtype)
    return dict(map_weights(weights, runtime.numpy_dtype(dtype), rows=rows, int8=int8))


class MaxAudioFeatures:
    """Encoder output ``(batch, n_audio_ctx, width)`` resident on the model's device, and, once a
    decoding session asked for them, every window's cross-attention keys/values (the row kernels'
    per-window layout), which later sessions on the same windows reuse: one batch of windows is
    decoded in several sessions when its prompts differ in length or a window falls back to a
    higher temperature."""

    def __init__(self, buffer: Buffer) -> None:
        self.buffer = buffer
        self._cross_per_window: list[Buffer] | None = None

    def cross_per_window(self, model: MaxWhisper) -> list[Buffer]:
        """Each block's cross keys and values for every window, ``(windows, heads, ctx,
        head_width)``, computed on the first call."""
        if self._cross_per_window is None:
            every_window = model.to_device(np.arange(self.batch_size, dtype=np.int64))
            self._cross_per_window = model.run("cross_kv", self.buffer, every_window)
        return self._cross_per_window

    @property
    def batch_size(self) -> int:
        return int(self.buffer.shape[0])

    def numpy(self) -> np.ndarray:
        return runtime.host_float32(self.buffer)


class MaxDecoderSession:
    """Sequences decoding together on MAX; see :class:`maxwhisper_lib.decoding.backend.DecoderSession`."""

    def __init__(self, model: MaxWhisper, audio: MaxAudioFeatures, rows: np.ndarray) -> None:
        self.model = model
        self.audio = audio
        self.rows = np.asarray(rows, dtype=np.int64)
        self._rows_buffer = model.to_device(self.rows)
        # Row kernels: keys/values once per window, each sequence reads its window's (beams of
        # one window share them); otherwise one copy per sequence.
        self.per_window = model.row_kernels
        self.cross = (
            audio.cross_per_window(model)
            if self.per_window
            else model.run("cross_kv", audio.buffer, self._rows_buffer)
        )
        self._caches: list[Buffer] | None = None
        self._length = 0

    @property
    def caches(self) -> list[Buffer]:
        """The self-attention key/value buffers, zeroed on first use (a GPU's greedy loop
        decodes in buffers of its own)."""
        if self._caches is None:
            device = runtime.get_device(self.model.device_name)
            self._caches = [
                runtime.zeros([len(self.rows), *(int(d) for d in t.shape[1:])], t.dtype, device)
                for t in cache_types(
                    self.model.dims,
                    self.model.dtype,
                    DeviceRef.from_device(device),
                    rows=self.per_window,
                )
            ]
        return self._caches

    def rows_input(self) -> list[Buffer]:
        """Each sequence's window, where the graphs take it (the CPU's per-window keys/values)."""
        return [self._rows_buffer] if self.per_window else []

    def advance(self, n: int) -> None:
        """Count ``n`` positions the caches now hold (written by a graph outside :meth:`logits`)."""
        self._length += n

    @property
    def batch_size(self) -> int:
        return len(self.rows)

    @property
    def length(self) -> int:
        return self._length

    def _step(self, tokens: np.ndarray, positions: Sequence[int] = (-1,)) -> Buffer:
        """Run the decoder step; its logits stay on the device."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        n_new = tokens.shape[1]
        if tokens.shape[0] != self.batch_size:
            raise ValueError(
                f"expected tokens for {self.batch_size} sequences, got {tokens.shape[0]}"
            )
        if self._length + n_new > self.model.dims.n_text_ctx:
            raise DecodingOptionsError(
                f"sequence of {self._length + n_new} tokens exceeds the decoder's context of "
                f"{self.model.dims.n_text_ctx}"
            )
        positions_in, offset, mask, logit_positions = self.model.step_inputs(
            self._length, n_new, tuple(p % n_new for p in positions)
        )
        inputs = DecoderStepInputs(
            tokens=self.model.to_device(tokens),
            positions=positions_in,
            offset=offset,
            mask=mask,
            logit_positions=logit_positions,
            rows=self._rows_buffer if self.per_window else None,
            cross=self.cross,
            caches=self.caches,
        )
        (out,) = self.model.run("decoder_step", *inputs.as_list())
        self._length += n_new
        return out

    def logits(self, tokens: np.ndarray, positions: Sequence[int] = (-1,)) -> np.ndarray:
        return runtime.host_float32(self._step(tokens, positions))

    def decode_greedy(
        self,
        initial: np.ndarray,
        sot_index: int,
        steps: int,
        masks: tuple[np.ndarray, np.ndarray],
        settings: np.ndarray,
    ) -> GreedyResult:
        """Greedy decoding at temperature 0 with every token chosen on the device
        (:mod:`maxwhisper_lib.engine.greedy_loop`): from the prompts ``initial (batch, n_prompt)``,
        ``<|startoftranscript|>`` at ``sot_index``, for at most ``steps`` tokens, under
        :meth:`~maxwhisper_lib.decoding.decode.LogitFilters.masks` and
        :meth:`~maxwhisper_lib.decoding.decode.LogitFilters.settings`."""
        return self.model.greedy_loop.run(
            self, np.asarray(initial, dtype=np.int64), sot_index, steps, *masks, settings
        )

    def reorder(self, source_rows: np.ndarray) -> None:
        source = np.asarray(source_rows, dtype=np.int64)
        if np.array_equal(source, np.arange(self.batch_size)):
            return
        self.model.run("reorder", self.model.to_device(source), *self.caches)
        new_rows = self.rows[source]
        if not np.array_equal(new_rows, self.rows):  # a sequence moved to another window
            self.rows = new_rows
            self._rows_buffer = self.model.to_device(self.rows)
            if not self.per_window:
                self.cross = self.model.run("cross_kv", self.audio.buffer, self._rows_buffer)


class MaxWhisper:
    """Whisper on MAX Graph, CPU or GPU (a :class:`maxwhisper_lib.decoding.backend.WhisperBackend`)."""

    mel_frontend = "max"

    def __init__(
        self,
        weights: WhisperWeights,
        device: str = "auto",
        dtype: str = "float32",
        row_kernels: bool | None = None,
        device_loop: bool = True,
        capture: bool | None = None,
        shipped_build: bool = True,
        only_graphs: Iterable[str] | None = None,
    ) -> None:
        self.device_name = runtime.resolve_device_name(device)
        self.dtype = runtime.resolve_dtype(dtype, self.device_name)
        self.dtype_name = dtype
        self.dims = weights.dims
        self.name = weights.name
        self.alignment_heads = weights.alignment_heads
        if row_kernels is None:
            row_kernels = self.device_name == "cpu"
        if row_kernels and self.device_name != "cpu":
            raise DecodingOptionsError("the Mojo row kernels run on the CPU only")
        self.int8 = dtype == "int8"
        if self.int8 and not row_kernels:
            raise DecodingOptionsError("dtype int8 needs the Mojo kernels (row_kernels=True)")
        if self.int8 and machine.int8_kernel_path() == "portable":
            warnings.warn(
                "this CPU has neither AVX-512 VNNI nor AVX2: the int8 kernels run their "
                "portable path, which is slower than float32 here; use dtype='float32'",
                RuntimeWarning,
                stacklevel=2,
            )
        self.row_kernels = row_kernels
        self.shipped_build = shipped_build
        """Whether the package's portable compiled build may stand in for a build for this
        machine not compiled yet (:func:`maxwhisper_lib.engine.compiled.shipped_model`)."""
        self.only_graphs = None if only_graphs is None else tuple(sorted(set(only_graphs)))
        """A subset of :data:`ALL_GRAPHS` to compile (checks that need a few
        graphs of a large architecture compile only those); ``None``: every graph."""
        if self.only_graphs is not None and not set(self.only_graphs) <= set(ALL_GRAPHS):
            unknown = sorted(set(self.only_graphs) - set(ALL_GRAPHS))
            raise ValueError(f"unknown graphs {unknown}: choose among {list(ALL_GRAPHS)}")
        self.device_loop = device_loop
        """Greedy decoding at temperature 0 chooses every token on the device
        (:meth:`MaxDecoderSession.decode_greedy`); off: the host loop over the step's logits."""
        self._capture = capture
        self._greedy_loop: GreedyLoop | None = None
        self.row_dtype = (
            DType.from_numpy(row_weight_dtype(weights)) if row_kernels else None
        )  # the decoder's weights on the device: the checkpoint's precision
        self.registry = weight_registry(weights, self.dtype, rows=row_kernels, int8=self.int8)
        if self.only_graphs is not None:  # only the weights those graphs declare
            declared = declared_weights(self.graphs().values())
            self.registry = {k: v for k, v in self.registry.items() if k in declared}
        self._models: dict[str, Model] = {}
        self.from_store = False  # whether the compiled graphs were read back, not compiled
        self.load_seconds: float | None = None
        self.compile_seconds: dict[str, float] = {}
        self.run_seconds: dict[str, float] = {}
        self._step_inputs: dict[tuple, tuple[Buffer, ...]] = {}

    def __repr__(self) -> str:
        kernels = "" if self.row_kernels else ", row_kernels=False"
        return (
            f"MaxWhisper({self.name!r}, device={self.device_name!r}, "
            f"dtype={self.dtype_name!r}{kernels})"
        )

    def compiled(self, name: str) -> Model:
        """The compiled graph ``name`` (one of :data:`ALL_GRAPHS`); the
        first call compiles every graph of the model together, or reads them back from an
        earlier process (:func:`maxwhisper_lib.engine.compiled.load_models`)."""
        if self.only_graphs is not None and name not in self.only_graphs:
            raise ValueError(f"graph {name!r} is not among this model's {list(self.only_graphs)}")
        if not self._models:
            start = time.perf_counter()
            self._models, self.from_store = compiled.load_models(
                self._label(),
                self.compile_config(),
                self._build_graphs,
                self.device_name,
                self.registry,
                self._extensions(),
                shipped=self.shipped_build,
            )
            self.load_seconds = time.perf_counter() - start
            self.compile_seconds = dict.fromkeys(self._models, 0.0)
            self.compile_seconds["encoder"] = self.load_seconds  # the whole module, once
        return self._models[name]

    def compile_only(self, stream=None) -> list[Path]:
        """Compile every graph of the model into the compiled-model store without binding
        weights (what :mod:`maxwhisper_lib.lab.precompile` runs for a virtual GPU); the MEF files."""
        config = self.compile_config()
        compiled.compile_to_store(
            self._label(), config, self._build_graphs, self.device_name, self._extensions(), stream
        )
        return [compiled.store_path(config, self.device_name)]

    def _label(self) -> str:
        return f"{self.name} ({self.device_name}, {self.dtype_name})"

    def _extensions(self) -> Iterable[Path]:
        return KERNEL_EXTENSIONS if self.row_kernels else ()

    def compile_config(self) -> dict[str, object]:
        """What decides the compiled code, besides the sources and the device (see
        :func:`maxwhisper_lib.engine.compiled.model_key`)."""
        config: dict[str, object] = {
            "dims": self.dims,
            "dtype": self.dtype,
            "row_dtype": self.row_dtype,
            "int8": self.int8,
            "stft_dtype": default_stft_dtype(self.device_name),
        }
        if self.only_graphs is not None:
            config["graphs"] = self.only_graphs
        if self.row_kernels:  # the GPU's graphs do not use the kernels: a change there keeps them
            config["kernel_sources"] = compiled.kernel_digest()
        return config

    def graphs(self, module: Module | None = None) -> dict[str, Graph]:
        """Every graph of the model (or :attr:`only_graphs`), built into ``module`` (or each on
        its own), by our name."""
        device = runtime.device_ref(self.device_name)
        wanted = set(self.only_graphs or ALL_GRAPHS)
        graphs: dict[str, Graph] = {}
        for name, builder in GRAPHS.items():
            if name not in wanted:
                continue
            extra: dict[str, object] = (
                {"row_dtype": self.row_dtype} if name in ROW_KERNEL_GRAPHS else {}
            )
            if self.int8 and name in INT8_GRAPHS:
                extra["int8"] = True
            graphs[name] = builder(self.dims, self.dtype, device, module=module, **extra)
        if LOG_MEL_PIECE in wanted:
            graphs[LOG_MEL_PIECE] = build_log_mel_piece_graph(
                mel_filters(self.dims.n_mels), device, default_stft_dtype(self.device_name), module
            )
        return graphs

    def _build_graphs(self, module: Module) -> dict[str, str]:
        """Build every graph of the model into ``module``, its weights checked against the
        registry (WeightsError); our name -> the graph's name."""
        graphs = self.graphs(module)
        check_registry(graphs.values(), self.registry)
        return {name: graph.name for name, graph in graphs.items()}

    def warm_up(
        self, names: Sequence[str] = ("encoder", "cross_kv", "decoder_step")
    ) -> dict[str, float]:
        """Compile (or read back) the model's graphs; seconds per graph (the whole module's
        time is counted under the first)."""
        for name in names:
            self.compiled(name)
        return {name: self.compile_seconds[name] for name in names}

    def run(self, name: str, *inputs) -> list[Buffer]:
        model = self.compiled(name)
        start = time.perf_counter()
        outputs = model.execute(*inputs)
        self._count(name, start)
        return outputs

    def log_mel(self, samples: np.ndarray, padding: int = 0) -> np.ndarray:
        """Host float32 log-mel of ``samples`` plus ``padding`` zeros, computed on this model's
        device by :class:`~maxwhisper_lib.audio.features.LogMelSpectrogram` (timed as ``"log_mel"``)."""
        start = time.perf_counter()
        mel = self._log_mel().numpy(samples, padding)
        self._count("log_mel", start)
        return mel

    def log_mel_stream(
        self, chunks: Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]], padding: int = 0
    ) -> LogMelPieces:
        """:meth:`log_mel` of the samples ``chunks`` yield, taken as they arrive (the samples
        are never held whole), or of a function that yields them afresh (a long spectrogram is
        then not held whole either; see :meth:`~maxwhisper_lib.audio.features.LogMelSpectrogram.stream`)."""
        start = time.perf_counter()
        mel = self._log_mel().stream(chunks, padding, clock=lambda t: self._count("log_mel", t))
        self._count("log_mel", start)
        return mel

    def _log_mel(self) -> LogMelSpectrogram:
        """The front end on this model's device, its piece graph from the model's module."""
        from ..audio.features import LogMelSpectrogram

        return LogMelSpectrogram(
            self.dims.n_mels, self.device_name, piece_model=self.compiled(LOG_MEL_PIECE)
        )

    def _count(self, name: str, start: float) -> None:
        """Add the seconds since ``start`` to ``run_seconds[name]``."""
        self.run_seconds[name] = self.run_seconds.get(name, 0.0) + time.perf_counter() - start

    def step_inputs(
        self, offset: int, n_new: int, logit_positions: tuple[int, ...]
    ) -> tuple[Buffer, ...]:
        """The decoder step's small inputs (:class:`DecoderStepInputs`): positions, cache offset
        (host), mask and logit positions, as device buffers; those of one-token steps are made
        once per offset and kept (a step's host time is a tenth of its time; the mask alone
        ~20 us)."""
        key = (offset, n_new, logit_positions)
        inputs = self._step_inputs.get(key)
        if inputs is None:
            inputs = (
                self.to_device(np.arange(offset, offset + n_new, dtype=np.int64)),
                Buffer.from_numpy(np.array(offset, dtype=np.int64)),  # a host scalar
                self.to_device(self_attention_mask(offset, n_new, self.dims.n_text_ctx)),
                self.to_device(np.array(logit_positions, dtype=np.int64)),
            )
            if n_new == 1:
                self._step_inputs[key] = inputs
        return inputs

    def to_device(self, array: np.ndarray) -> Buffer:
        return runtime.to_device(array, self.device_name)

    def _activation_input(self, array: np.ndarray) -> Buffer:
        return runtime.to_device_as(array, self.dtype, self.device_name)

    def embed_audio(self, mel: np.ndarray | Buffer) -> MaxAudioFeatures:
        """Encode log-mel windows ``(batch, n_mels, 3000)`` (host array or device buffer)."""
        if not isinstance(mel, Buffer):
            mel = np.asarray(mel)
            if mel.ndim == 2:
                mel = mel[None]
            expected = (self.dims.n_mels, 2 * self.dims.n_audio_ctx)
            if mel.ndim != 3 or mel.shape[1:] != expected:
                raise ValueError(
                    f"expected log-mel windows (batch, {expected[0]}, {expected[1]}), got {mel.shape}"
                )
            mel = self._activation_input(mel)
        (features,) = self.run("encoder", mel)
        return MaxAudioFeatures(features)

    @property
    def greedy_loop(self) -> GreedyLoop:
        """The host side of greedy decoding on the device (one per model: on a GPU it keeps
        the captured step graphs)."""
        if self._greedy_loop is None:
            self._greedy_loop = GreedyLoop(self, self._capture)
        return self._greedy_loop

    def start_decoding(self, audio: MaxAudioFeatures, rows: np.ndarray) -> MaxDecoderSession:
        return MaxDecoderSession(self, audio, rows)

    def alignment(
        self, audio: MaxAudioFeatures, row: int, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        features = (
            audio.buffer
            if audio.batch_size == 1
            else self._activation_input(audio.numpy()[row : row + 1])
        )
        tokens = np.ascontiguousarray(np.asarray(tokens, dtype=np.int64)[None])
        n = tokens.shape[1]
        logits, scores = self.run(
            "alignment",
            self.to_device(tokens),
            self.to_device(np.arange(n, dtype=np.int64)),
            self.to_device(self_attention_mask(0, n)),
            features,
        )
        return runtime.host_float32(logits)[0], runtime.host_float32(scores)
