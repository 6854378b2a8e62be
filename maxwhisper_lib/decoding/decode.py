"""Decoding 30-second windows: greedy, sampling and beam search over the backend protocol.

A NumPy port of openai-whisper's ``whisper/decoding.py`` with the same semantics, written once
against :class:`~maxwhisper_lib.decoding.backend.WhisperBackend` so that MAX (the product) and the PyTorch
reference run the very same loop:

* the initial tokens (``<|startofprev|>`` + prompt, the start-of-transcript sequence, a prefix),
  language detection on multilingual models, the translate task;
* the logit filters ``SuppressBlank``, ``SuppressTokens`` (``"-1"``: the non-speech set) and
  ``ApplyTimestampRules`` (paired timestamps, non-decreasing, ``max_initial_timestamp``,
  timestamp when their total probability beats any text token), vectorised over the batch;
* greedy / temperature sampling (best-of-N) and beam search with ``patience``, candidates ranked
  by summed log-probability with length normalisation or ``length_penalty``;
* no-speech probability at ``<|startoftranscript|>``, average log-probability and gzip
  compression ratio, which drive the temperature fallback of :mod:`maxwhisper_lib.decoding.transcribe`.

One ``session.logits`` call per step: the first feeds the whole prompt and returns the logits at
the start-of-transcript position (no-speech probability) and the last position; later calls feed
one token per sequence and return one row of logits each. Host work per step is a few vectorised
passes over ``(batch, n_vocab)`` float32 logits.
Greedy decoding at temperature 0 on a backend with a device loop (MAX: ``device_loop``) skips
this host loop: the filters, the choice and their per-sequence state run in the step graph
(:mod:`maxwhisper_lib.engine.graphs.loop`), and only the tokens come back.

Sampling at temperature > 0 draws from a seeded NumPy generator: it follows the same
distribution as openai-whisper's ``torch.distributions.Categorical`` but can never reproduce
torch's random stream, so only temperature-0 decoding is token-comparable with openai-whisper.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ..audio.constants import CHUNK_LENGTH
from ..errors import DecodingOptionsError
from .backend import AudioFeatures, DecoderSession, WhisperBackend
from .tokenizer import TASKS, Tokenizer, get_tokenizer, language_code
from .whisper_parts import module

compression_ratio = module("utils").compression_ratio  # openai-whisper's, without torch


Prompt = str | Sequence[int] | None


@dataclass(frozen=True)
class DecodingOptions:
    """openai-whisper's ``DecodingOptions`` field for field, without ``fp16`` (the backend's
    dtype decides the precision)."""

    task: str = "transcribe"
    language: str | None = None
    temperature: float = 0.0
    sample_len: int | None = None
    best_of: int | None = None
    beam_size: int | None = None
    patience: float | None = None
    length_penalty: float | None = None
    prompt: Prompt = None
    prefix: Prompt = None
    suppress_tokens: str | Iterable[int] | None = "-1"
    suppress_blank: bool = True
    without_timestamps: bool = False
    max_initial_timestamp: float | None = 1.0


@dataclass(frozen=True)
class DecodingResult:
    """One window's decoded text and the statistics the fallback logic reads."""

    language: str
    language_probs: dict[str, float] | None = None
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    avg_logprob: float = math.nan
    no_speech_prob: float = math.nan
    temperature: float = math.nan
    compression_ratio: float = math.nan


def validate_options(options: DecodingOptions, dims=None) -> DecodingOptions:
    """Raise :class:`DecodingOptionsError` for options openai-whisper rejects or cannot run.

    With ``dims``, also checks the language and task against the model (English-only models
    take neither another language nor ``translate``).
    """
    if options.task not in TASKS:
        raise DecodingOptionsError(f"unknown task {options.task!r}; choose one of {TASKS}")
    if options.beam_size is not None and options.best_of is not None:
        raise DecodingOptionsError("beam_size and best_of can't be given together")
    if options.temperature < 0 or not math.isfinite(options.temperature):
        raise DecodingOptionsError(f"temperature must be >= 0, got {options.temperature}")
    if options.temperature == 0 and options.best_of is not None:
        raise DecodingOptionsError("best_of with greedy sampling (T=0) is not compatible")
    if options.patience is not None and options.beam_size is None:
        raise DecodingOptionsError("patience requires beam_size to be given")
    if options.length_penalty is not None and not 0 <= options.length_penalty <= 1:
        raise DecodingOptionsError("length_penalty (alpha) should be a value between 0 and 1")
    for name in ("beam_size", "best_of", "sample_len"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise DecodingOptionsError(f"{name} must be at least 1, got {value}")
    if options.beam_size is not None and round(options.beam_size * (options.patience or 1.0)) < 1:
        raise DecodingOptionsError(
            f"Invalid beam size ({options.beam_size}) or patience ({options.patience})"
        )
    if options.language is not None:
        language_code(options.language)
    if dims is not None:
        get_tokenizer(dims, language=options.language, task=options.task)
    suppress_token_list(options.suppress_tokens)
    return options


def suppress_token_list(suppress_tokens: str | Iterable[int] | None) -> list[int]:
    """Token ids of a ``suppress_tokens`` option (``"-1,123"`` or ids); ``-1`` stays a marker."""
    if suppress_tokens is None:
        return []
    if isinstance(suppress_tokens, str):
        try:
            return [int(t) for t in suppress_tokens.split(",") if t.strip()]
        except ValueError as error:
            raise DecodingOptionsError(
                f"suppress_tokens must be comma-separated token ids, got {suppress_tokens!r}"
            ) from error
    return [int(t) for t in suppress_tokens]


# ---------------------------------------------------------------------------------------------
# numerics on (batch, n_vocab) float32 logits


def _row_max_and_sum(logits: np.ndarray, scratch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row maxima and ``sum(exp(x - max))``; rows that are all ``-inf`` give ``-inf`` and 0."""
    top = logits.max(axis=-1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    np.subtract(logits, top, out=scratch)
    np.exp(scratch, out=scratch)
    return top[:, 0], scratch.sum(axis=-1)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    """``log(sum(exp(x)))`` over the last axis, ``-inf`` for rows without a finite entry."""
    top = x.max(axis=-1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(np.exp(x - top).sum(axis=-1)) + top[:, 0]


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(x)


def softmax_at(logits: np.ndarray, index: np.ndarray | int) -> np.ndarray:
    """Softmax probability of column ``index`` (per row) of ``logits`` ``(n, vocab)``."""
    top = logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits - top)
    rows = np.arange(logits.shape[0])
    return exp[rows, index] / exp.sum(axis=-1)


# ---------------------------------------------------------------------------------------------
# logit filters


class LogitFilters:
    """``SuppressBlank``, ``SuppressTokens`` and ``ApplyTimestampRules``, applied in that order
    and in place to the step's logits ``(batch, n_vocab)``."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        sample_begin: int,
        *,
        suppress_blank: bool,
        suppress_tokens: Sequence[int],
        timestamps: bool,
        max_initial_timestamp_index: int | None,
    ) -> None:
        self.sample_begin = sample_begin
        self.eot = tokenizer.eot
        self.timestamp_begin = tokenizer.timestamp_begin
        self.no_timestamps = tokenizer.no_timestamps
        self.blank = np.array([*tokenizer.encode(" "), tokenizer.eot]) if suppress_blank else None
        self.suppress = np.array(suppress_tokens, dtype=np.int64) if suppress_tokens else None
        self.timestamps = timestamps
        self.max_initial_timestamp_index = max_initial_timestamp_index

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        """Mask ``logits`` given every sequence's ``tokens`` so far ``(batch, length)``."""
        sampled = tokens[:, self.sample_begin :]
        self._suppress_fixed(logits, first=sampled.shape[1] == 0)
        if self.timestamps:
            self._pair_rules(logits, self._sampled_rules(sampled))
            # a timestamp whenever all timestamps together outweigh the likeliest text token
            begin = self.timestamp_begin
            timestamp_mass = _logsumexp(logits[:, begin:])
            best_text = logits[:, :begin].max(axis=-1)
            logits[timestamp_mass > best_text, :begin] = -np.inf

    def masks(self, n_vocab: int) -> tuple[np.ndarray, np.ndarray]:
        """The part of :meth:`apply` that does not depend on the tokens so far, as additive
        float32 masks ``(n_vocab,)`` (0 or ``-inf``) for the first sampled token and for the
        later ones; the rest is the timestamp rules of :meth:`row_rules` (what the device loop
        keeps per sequence: :mod:`maxwhisper_lib.engine.graphs.selection`)."""
        first, later = np.zeros((2, 1, n_vocab), dtype=np.float32)
        self._suppress_fixed(first, first=True)
        self._suppress_fixed(later, first=False)
        return first[0], later[0]

    def settings(self, n_vocab: int, no_speech: int = -1) -> np.ndarray:
        """The decode's fixed integers for the device loop
        (:data:`~maxwhisper_lib.engine.graphs.selection.SETTINGS`), with the ``no_speech`` token id
        (-1: none). The loop's graphs take the timestamps to be the last 1501 ids of the
        vocabulary, as in every Whisper vocabulary: ValueError otherwise."""
        if n_vocab - self.timestamp_begin != 1501:
            raise ValueError(
                f"timestamps start at {self.timestamp_begin} of {n_vocab} tokens: not the last "
                "1501 ids, which the device loop assumes"
            )
        return np.array([self.eot, int(self.timestamps), no_speech], dtype=np.int64)

    def row_rules(self, tokens: np.ndarray) -> np.ndarray:
        """What :meth:`apply` decides per sequence from ``tokens`` ``(batch, length)``, as the
        integers ``(batch, 6)``: block every timestamp (0/1), block every text token (0/1), the
        first timestamp token still allowed (0: any), the timestamp-mass rule on (0/1), the first
        timestamp token id and the end-of-text id."""
        return self._sampled_rules(tokens[:, self.sample_begin :])

    def _suppress_fixed(self, logits: np.ndarray, first: bool) -> None:
        """Blank (first token only), the suppressed tokens, ``<|notimestamps|>``, and for the
        first token: a timestamp, at most ``max_initial_timestamp`` in."""
        if first and self.blank is not None:
            logits[:, self.blank] = -np.inf
        if self.suppress is not None:
            logits[:, self.suppress] = -np.inf
        if not self.timestamps:
            return
        begin = self.timestamp_begin
        if self.no_timestamps is not None:
            logits[:, self.no_timestamps] = -np.inf
        if first:
            logits[:, :begin] = -np.inf
            if self.max_initial_timestamp_index is not None:
                logits[:, begin + self.max_initial_timestamp_index + 1 :] = -np.inf

    def _sampled_rules(self, sampled: np.ndarray) -> np.ndarray:
        """Timestamps come in pairs (except just before EOT) and never decrease: per sequence
        of ``sampled`` tokens, whether a pair just closed (timestamps blocked), whether one is
        open (text blocked), and the first timestamp still allowed (0: any), with the timestamp
        rules' switch and the token ids they need (:meth:`row_rules`)."""
        n, k = sampled.shape
        rules = np.zeros((n, 6), dtype=np.int64)
        rules[:, 4], rules[:, 5] = self.timestamp_begin, self.eot
        if not self.timestamps:
            return rules
        rules[:, 3] = 1
        if k == 0:
            return rules
        is_timestamp = sampled >= self.timestamp_begin
        last = is_timestamp[:, -1]
        penultimate = is_timestamp[:, -2] if k >= 2 else np.ones(n, dtype=bool)
        rules[:, 0] = last & penultimate
        open_pair = last & ~penultimate
        rules[:, 1] = open_pair
        has_timestamp = is_timestamp.any(axis=1)
        last_index = k - 1 - np.argmax(is_timestamp[:, ::-1], axis=1)
        last_value = sampled[np.arange(n), last_index]
        # the last timestamp again only to close its pair; after a pair, a later one
        rules[:, 2] = np.where(has_timestamp, np.where(open_pair, last_value, last_value + 1), 0)
        return rules

    def _pair_rules(self, logits: np.ndarray, rules: np.ndarray) -> None:
        """Mask ``logits`` by the per-sequence rules of :meth:`_sampled_rules`."""
        begin = self.timestamp_begin
        logits[rules[:, 0] > 0, begin:] = -np.inf  # a pair just closed: text or EOT
        logits[rules[:, 1] > 0, : self.eot] = -np.inf  # a pair is open: timestamp or EOT
        first_allowed = rules[:, 2] - begin
        if (first_allowed > 0).any():  # forbid timestamps before the first allowed one
            span = np.arange(logits.shape[1] - begin)
            logits[:, begin:][span < first_allowed[:, None]] = -np.inf


# ---------------------------------------------------------------------------------------------
# token decoders


class GreedyDecoder:
    """Argmax at temperature 0, else a draw from ``softmax(logits / temperature)``."""

    def __init__(self, temperature: float, eot: int, rng: np.random.Generator) -> None:
        self.temperature = temperature
        self.eot = eot
        self.rng = rng

    def reset(self, n_audio: int) -> None:
        pass

    def update(
        self, tokens: np.ndarray, logits: np.ndarray, sum_logprobs: np.ndarray, scratch: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """Next token of every row (no reordering); completed when every row has ended."""
        rows = np.arange(len(logits))
        next_tokens = logits.argmax(axis=-1) if self.temperature == 0 else self._sample(logits)
        top, total = _row_max_and_sum(logits, scratch)
        logprobs = (logits[rows, next_tokens] - top) - _log(total)
        return self.take(tokens, next_tokens, logprobs, sum_logprobs)

    def take(
        self,
        tokens: np.ndarray,
        next_tokens: np.ndarray,
        logprobs: np.ndarray,
        sum_logprobs: np.ndarray,
    ) -> tuple[np.ndarray, None, bool]:
        """Add the chosen tokens' log-probabilities (of sequences still running) and keep ended
        sequences at EOT (the device loop does the same in its step graph)."""
        ended = tokens[:, -1] == self.eot
        sum_logprobs += np.where(ended, np.float32(0), logprobs).astype(np.float32)
        next_tokens[ended] = self.eot
        return next_tokens, None, bool((next_tokens == self.eot).all())

    def _sample(self, logits: np.ndarray) -> np.ndarray:
        scaled = logits.astype(np.float64) / self.temperature
        scaled -= scaled.max(axis=-1, keepdims=True)
        cumulative = np.cumsum(np.exp(scaled), axis=-1)
        draws = self.rng.random(len(logits)) * cumulative[:, -1]
        return np.argmax(cumulative > draws[:, None], axis=-1)

    def finalize(
        self, tokens: np.ndarray, sum_logprobs: np.ndarray
    ) -> tuple[list[list[np.ndarray]], list[list[float]]]:
        """Per audio: its group's sequences (each ending in EOT) and summed log-probabilities."""
        ended = np.concatenate([tokens, np.full((len(tokens), 1), self.eot, tokens.dtype)], 1)
        n_audio, n_group = sum_logprobs.shape
        groups = ended.reshape(n_audio, n_group, -1)
        return [list(group) for group in groups], sum_logprobs.tolist()


class BeamSearchDecoder:
    """Beam search with ``patience`` (arXiv:2204.05424), exactly as openai-whisper ranks and
    collects candidates (ties keep openai-whisper's first-seen order)."""

    def __init__(self, beam_size: int, eot: int, patience: float | None = None) -> None:
        self.beam_size = beam_size
        self.eot = eot
        self.patience = patience or 1.0
        self.max_candidates = round(beam_size * self.patience)
        self.finished: list[dict[tuple[int, ...], float]] = []

    def reset(self, n_audio: int) -> None:
        self.finished = [{} for _ in range(n_audio)]

    def update(
        self, tokens: np.ndarray, logits: np.ndarray, sum_logprobs: np.ndarray, scratch: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Keep the ``beam_size`` best unfinished continuations per audio; returns the next
        tokens, the rows they continue, and whether every audio has enough finished ones."""
        beam = self.beam_size
        n_audio = len(tokens) // beam
        top, total = _row_max_and_sum(logits, scratch)
        top_k = np.argpartition(-logits, beam, axis=-1)[:, : beam + 1]
        rows = np.arange(len(logits))[:, None]
        top_k = np.take_along_axis(
            top_k, np.argsort(-logits[rows, top_k], axis=-1, kind="stable"), -1
        )
        candidate_logprobs = (logits[rows, top_k] - top[:, None]) - _log(total)[:, None]
        candidate_scores = (sum_logprobs[:, None] + candidate_logprobs).astype(np.float32)
        next_tokens = np.empty(len(tokens), dtype=np.int64)
        sources = np.empty(len(tokens), dtype=np.int64)
        saved_total = 0
        for i in range(n_audio):
            first = i * beam
            # identical sequences (all beams at the first step) are one candidate: the later
            # row's score and source win, the first-seen position is kept (a dict's update)
            same_as = _first_identical_row(tokens[first : first + beam])
            scores: dict[tuple[int, int], float] = {}
            continues: dict[tuple[int, int], int] = {}
            for j in range(beam):
                for k in range(beam + 1):
                    key = (int(same_as[j]), int(top_k[first + j, k]))
                    scores[key] = float(candidate_scores[first + j, k])
                    continues[key] = first + j
            finished: dict[tuple[int, ...], float] = {}
            saved = 0
            for key in sorted(scores, key=scores.get, reverse=True):
                if key[1] == self.eot:
                    sequence = (*tokens[continues[key]].tolist(), self.eot)
                    finished[sequence] = scores[key]
                else:
                    sum_logprobs[saved_total] = scores[key]
                    next_tokens[saved_total] = key[1]
                    sources[saved_total] = continues[key]
                    saved += 1
                    saved_total += 1
                    if saved == beam:
                        break
            kept = self.finished[i]
            for sequence in sorted(finished, key=finished.get, reverse=True):
                if len(kept) >= self.max_candidates:
                    break
                kept[sequence] = finished[sequence]
        completed = all(len(kept) >= self.max_candidates for kept in self.finished)
        return next_tokens, sources, completed

    def finalize(
        self, tokens: np.ndarray, sum_logprobs: np.ndarray
    ) -> tuple[list[list[np.ndarray]], list[list[float]]]:
        """Finished sequences per audio, topped up with the best live beams when fewer than
        ``beam_size`` finished."""
        groups = tokens.reshape(len(sum_logprobs), self.beam_size, -1)
        for i, sequences in enumerate(self.finished):
            if len(sequences) < self.beam_size:
                for j in list(np.argsort(sum_logprobs[i]))[::-1]:
                    sequences[(*groups[i, j].tolist(), self.eot)] = float(sum_logprobs[i][j])
                    if len(sequences) >= self.beam_size:
                        break
        candidates = [[np.array(s) for s in sequences] for sequences in self.finished]
        return candidates, [list(sequences.values()) for sequences in self.finished]


def _first_identical_row(tokens: np.ndarray) -> np.ndarray:
    """For each row, the index of the first row holding the same tokens."""
    same = (tokens[:, None, :] == tokens[None, :, :]).all(axis=-1)
    return np.argmax(same, axis=1)


def rank_candidates(
    tokens: list[list[np.ndarray]], sum_logprobs: list[list[float]], length_penalty: float | None
) -> list[int]:
    """Index of the best candidate per audio: summed log-probability over the length, or over
    Google NMT's ``((5 + length) / 6) ** length_penalty``."""
    selected = []
    for candidates, logprobs in zip(tokens, sum_logprobs, strict=True):
        scores = []
        for sequence, logprob in zip(candidates, logprobs, strict=True):
            length = len(sequence)
            penalty = length if length_penalty is None else ((5 + length) / 6) ** length_penalty
            scores.append(logprob / penalty)
        selected.append(int(np.argmax(scores)))
    return selected


# ---------------------------------------------------------------------------------------------
# language detection


def detect_language(
    backend: WhisperBackend,
    audio: AudioFeatures,
    tokenizer: Tokenizer | None = None,
    rows: Sequence[int] | None = None,
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Most likely language token per window and the probability of every language.

    One decoder pass over ``<|startoftranscript|>`` alone, in a session of its own (as
    openai-whisper, outside the main loop's cache). Raises for English-only models.
    """
    tokenizer = tokenizer or get_tokenizer(backend.dims)
    if tokenizer.language is None or tokenizer.language_token not in tokenizer.sot_sequence:
        raise DecodingOptionsError(
            "this model has no language tokens, so it cannot detect the language"
        )
    rows = np.arange(audio.batch_size) if rows is None else np.asarray(rows, dtype=np.int64)
    session = backend.start_decoding(audio, rows)
    logits = session.logits(np.full((len(rows), 1), tokenizer.sot, dtype=np.int64))[:, 0]
    language_tokens = np.array(tokenizer.all_language_tokens)
    masked = np.full_like(logits, -np.inf)
    masked[:, language_tokens] = logits[:, language_tokens]
    best = masked.argmax(axis=-1)
    probs = np.exp(masked - masked.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    codes = tokenizer.all_language_codes
    language_probs = [
        dict(zip(codes, probs[i, language_tokens].tolist(), strict=True)) for i in range(len(rows))
    ]
    return best, language_probs


# ---------------------------------------------------------------------------------------------
# the decoding task


class DecodingTask:
    """Decode windows of encoded audio with one set of :class:`DecodingOptions`.

    ``run(audio, rows, prompts)`` decodes window ``rows[i]`` of ``audio`` with its own prompt
    (default: ``options.prompt``); windows whose initial tokens have the same length decode
    together in one :class:`DecoderSession` batch, each repeated ``beam_size``/``best_of`` times.
    """

    def __init__(
        self,
        backend: WhisperBackend,
        options: DecodingOptions,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.backend = backend
        self.options = validate_options(options)
        self.tokenizer = get_tokenizer(
            backend.dims, language=options.language or "en", task=options.task
        )
        tokenizer = self.tokenizer
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.n_group = options.beam_size or options.best_of or 1
        self.n_ctx = backend.dims.n_text_ctx
        self.sample_len = options.sample_len or self.n_ctx // 2
        self.sot_sequence = (
            tokenizer.sot_sequence_including_notimestamps
            if options.without_timestamps
            else tokenizer.sot_sequence
        )
        self.prefix_tokens = self._prefix_tokens()
        if options.beam_size is not None:
            self.decoder: GreedyDecoder | BeamSearchDecoder = BeamSearchDecoder(
                options.beam_size, tokenizer.eot, options.patience
            )
        else:
            self.decoder = GreedyDecoder(options.temperature, tokenizer.eot, self.rng)

    def _prefix_tokens(self) -> list[int]:
        prefix = self.options.prefix
        if not prefix:
            return []
        tokens = (
            self.tokenizer.encode(" " + prefix.strip()) if isinstance(prefix, str) else list(prefix)
        )
        return tokens[-(self.n_ctx // 2 - self.sample_len) :]

    def initial_tokens(self, prompt: Prompt = None) -> list[int]:
        """``[<|startofprev|>, *prompt]`` (when there is one), the SOT sequence, the prefix."""
        tokens = [*self.sot_sequence, *self.prefix_tokens]
        if prompt:
            prompt_tokens = (
                self.tokenizer.encode(" " + prompt.strip())
                if isinstance(prompt, str)
                else list(prompt)
            )
            tokens = [self.tokenizer.sot_prev, *prompt_tokens[-(self.n_ctx // 2 - 1) :], *tokens]
        return tokens

    def suppress_tokens(self) -> list[int]:
        """The ``suppress_tokens`` option resolved (``-1``: the non-speech set) plus the special
        tokens openai-whisper never samples."""
        tokens = suppress_token_list(self.options.suppress_tokens)
        tokenizer = self.tokenizer
        if -1 in tokens:
            tokens = [t for t in tokens if t >= 0]
            tokens.extend(tokenizer.non_speech_tokens)
        tokens.extend(
            [
                tokenizer.transcribe,
                tokenizer.translate,
                tokenizer.sot,
                tokenizer.sot_prev,
                tokenizer.sot_lm,
            ]
        )
        if tokenizer.no_speech is not None:
            tokens.append(tokenizer.no_speech)
        return sorted(set(tokens))

    def logit_filters(self, sample_begin: int) -> LogitFilters:
        options = self.options
        max_initial = None
        if options.max_initial_timestamp:
            precision = CHUNK_LENGTH / self.backend.dims.n_audio_ctx
            max_initial = round(options.max_initial_timestamp / precision)
        return LogitFilters(
            self.tokenizer,
            sample_begin,
            suppress_blank=options.suppress_blank,
            suppress_tokens=self.suppress_tokens() if options.suppress_tokens else [],
            timestamps=not options.without_timestamps,
            max_initial_timestamp_index=max_initial,
        )

    def run(
        self,
        audio: AudioFeatures,
        rows: Sequence[int] | None = None,
        prompts: Sequence[Prompt] | None = None,
    ) -> list[DecodingResult]:
        """Decode windows ``rows`` (default: all) of ``audio``; one result per row."""
        rows = list(range(audio.batch_size)) if rows is None else [int(r) for r in rows]
        if prompts is None:
            prompts = [self.options.prompt] * len(rows)
        if len(prompts) != len(rows):
            raise ValueError(f"{len(prompts)} prompts for {len(rows)} windows")
        initial = [self.initial_tokens(p) for p in prompts]
        sot_index = [t.index(self.tokenizer.sot) for t in initial]

        languages = [self.options.language or "en"] * len(rows)
        language_probs: list[dict[str, float] | None] = [None] * len(rows)
        if self.options.language is None and self.tokenizer.language is not None:
            language_tokens, language_probs = detect_language(
                self.backend, audio, self.tokenizer, rows
            )
            languages = [max(probs, key=probs.get) for probs in language_probs]
            for tokens, index, token in zip(initial, sot_index, language_tokens, strict=True):
                tokens[index + 1] = int(token)

        results: list[DecodingResult | None] = [None] * len(rows)
        by_length: dict[int, list[int]] = {}
        for i, tokens in enumerate(initial):
            by_length.setdefault(len(tokens), []).append(i)
        for members in by_length.values():
            # sot_index is the same for every member: the prompt length fixes it
            decoded = self._decode_group(
                audio,
                [rows[i] for i in members],
                np.array([initial[i] for i in members], dtype=np.int64),
                sot_index[members[0]],
            )
            for i, (tokens, avg_logprob, no_speech_prob) in zip(members, decoded, strict=True):
                text = self.tokenizer.decode(tokens).strip()
                results[i] = DecodingResult(
                    language=languages[i],
                    language_probs=language_probs[i],
                    tokens=tokens,
                    text=text,
                    avg_logprob=avg_logprob,
                    no_speech_prob=no_speech_prob,
                    temperature=self.options.temperature,
                    compression_ratio=compression_ratio(text),
                )
        return results  # type: ignore[return-value]

    def _decode_group(
        self, audio: AudioFeatures, rows: list[int], initial: np.ndarray, sot_index: int
    ) -> list[tuple[list[int], float, float]]:
        """The main loop for windows sharing an initial-token length."""
        n_audio, sample_begin = initial.shape
        n = n_audio * self.n_group
        tokens = np.empty((n, sample_begin + self.sample_len + 1), dtype=np.int64)
        tokens[:, :sample_begin] = np.repeat(initial, self.n_group, axis=0)
        session: DecoderSession = self.backend.start_decoding(
            audio, np.repeat(np.array(rows, dtype=np.int64), self.n_group)
        )
        filters = self.logit_filters(sample_begin)
        sum_logprobs = np.zeros(n, dtype=np.float32)
        self.decoder.reset(n_audio)
        if self._on_device():
            masks = filters.masks(self.backend.dims.n_vocab)
            no_speech = self.tokenizer.no_speech
            settings = filters.settings(
                self.backend.dims.n_vocab, -1 if no_speech is None else no_speech
            )
            greedy = session.decode_greedy(
                tokens[:, :sample_begin], sot_index, self.sample_len, masks, settings
            )
            length = greedy.tokens.shape[1]
            tokens[:, :length] = greedy.tokens
            sum_logprobs, no_speech_probs = greedy.sum_logprobs, greedy.no_speech_probs
        else:
            length, no_speech_probs = self._host_loop(
                session, filters, tokens, sample_begin, sot_index, sum_logprobs
            )

        candidates, candidate_logprobs = self.decoder.finalize(
            tokens[:, :length], sum_logprobs.reshape(n_audio, self.n_group)
        )
        eot = self.tokenizer.eot
        sliced = [
            [sequence[sample_begin : int(np.argmax(sequence == eot))] for sequence in group]
            for group in candidates
        ]
        selected = rank_candidates(sliced, candidate_logprobs, self.options.length_penalty)
        decoded = []
        for i, best in enumerate(selected):
            chosen = sliced[i][best].tolist()
            avg_logprob = candidate_logprobs[i][best] / (len(chosen) + 1)
            decoded.append((chosen, avg_logprob, float(no_speech_probs[i * self.n_group])))
        return decoded

    def _on_device(self) -> bool:
        """Whether this decode runs on the device's greedy loop: greedy at temperature 0 on a
        backend that has one (:meth:`maxwhisper_lib.engine.model.MaxDecoderSession.decode_greedy`)."""
        return (
            isinstance(self.decoder, GreedyDecoder)
            and self.decoder.temperature == 0
            and getattr(self.backend, "device_loop", False)
        )

    def _host_loop(
        self,
        session: DecoderSession,
        filters: LogitFilters,
        tokens: np.ndarray,
        sample_begin: int,
        sot_index: int,
        sum_logprobs: np.ndarray,
    ) -> tuple[int, np.ndarray]:
        """The token loop over each step's logits on the host (sampling, beam search, the
        reference engine): fills ``tokens`` and ``sum_logprobs``; the length reached and the
        no-speech probabilities."""
        n = len(tokens)
        no_speech_probs = np.full(n, np.nan)
        scratch = np.empty((n, self.backend.dims.n_vocab), dtype=np.float32)
        length = sample_begin
        for step in range(self.sample_len):
            if step == 0:
                out = session.logits(tokens[:, :length], positions=(sot_index, -1))
                if self.tokenizer.no_speech is not None:
                    no_speech_probs = softmax_at(out[:, 0], self.tokenizer.no_speech)
                logits = np.array(out[:, 1], dtype=np.float32)
            else:
                out = session.logits(tokens[:, length - 1 : length])
                logits = np.array(out[:, 0], dtype=np.float32)
            filters.apply(logits, tokens[:, :length])
            next_tokens, sources, completed = self.decoder.update(
                tokens[:, :length], logits, sum_logprobs, scratch
            )
            if sources is not None:
                tokens[:, :length] = tokens[sources, :length]
                session.reorder(sources)
            tokens[:, length] = next_tokens
            length += 1
            if completed or length > self.n_ctx:
                break
        return length, no_speech_probs


def decode(
    backend: WhisperBackend,
    mel: np.ndarray | AudioFeatures,
    options: DecodingOptions | None = None,
    *,
    rng: np.random.Generator | None = None,
    **kwargs,
) -> DecodingResult | list[DecodingResult]:
    """Decode log-mel window(s) ``(n_mels, 3000)`` / ``(batch, n_mels, 3000)`` (host array or
    device buffer) or already encoded :class:`AudioFeatures`, like
    ``whisper.decode(model, mel, options)``; English-only models need no ``language``.

    ``kwargs`` replace fields of ``options``. A single 2-D window gives a single result.
    """
    options = replace(options or DecodingOptions(), **kwargs)
    single = False
    if isinstance(mel, np.ndarray):
        single = mel.ndim == 2
        audio = backend.embed_audio(mel[None] if single else mel)
    elif hasattr(mel, "batch_size"):  # encoded already
        audio = mel
    else:  # a device buffer of windows (batch, n_mels, 3000)
        audio = backend.embed_audio(mel)
    results = DecodingTask(backend, options, rng).run(audio)
    return results[0] if single else results
