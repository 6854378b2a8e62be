"""Greedy choice on the device: the selection graph against the host's logit filters."""

from __future__ import annotations

import numpy as np
import pytest

from maxwhisper_lib.checkpoints.synthetic import TOY_DIMS
from maxwhisper_lib.decoding.decode import LogitFilters
from maxwhisper_lib.decoding.tokenizer import get_tokenizer

TOKENIZER = get_tokenizer(TOY_DIMS)
BEGIN, EOT = TOKENIZER.timestamp_begin, TOKENIZER.eot
SAMPLE_BEGIN = 3


def _filters(timestamps: bool = True, **kwargs) -> LogitFilters:
    options = {
        "suppress_blank": True,
        "suppress_tokens": [1, 2, 7, 50000],
        "timestamps": timestamps,
        "max_initial_timestamp_index": 50,
    }
    return LogitFilters(TOKENIZER, SAMPLE_BEGIN, **{**options, **kwargs})


def _histories(rng: np.random.Generator, n: int, sampled: int) -> np.ndarray:
    """Token histories that reach every timestamp state: none yet, a pair open, a pair just
    closed, text after a pair, one timestamp (a pair open) ..."""
    tokens = np.empty((n, SAMPLE_BEGIN + sampled), dtype=np.int64)
    tokens[:, :SAMPLE_BEGIN] = TOKENIZER.sot
    for row in range(n):
        value = BEGIN
        for j in range(sampled):
            if rng.random() < 0.4:  # a timestamp, never decreasing
                value += int(rng.integers(0, 40))
                tokens[row, SAMPLE_BEGIN + j] = min(value, TOY_DIMS.n_vocab - 1)
            else:
                tokens[row, SAMPLE_BEGIN + j] = int(rng.integers(0, EOT))
    return tokens


def _logits(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random logits with timestamps sometimes heavy enough to win the mass rule."""
    logits = rng.normal(0.0, 3.0, size=(n, TOY_DIMS.n_vocab)).astype(np.float32)
    logits[: n // 3, BEGIN:] += 4.0
    return logits


def _host_choice(filters: LogitFilters, logits: np.ndarray, tokens: np.ndarray):
    logits = logits.copy()
    filters.apply(logits, tokens)
    top = logits.max(axis=-1, keepdims=True)
    # GreedyDecoder.update at temperature 0: the chosen (maximal) logit minus the logsumexp
    return logits.argmax(axis=-1), -np.log(np.exp(logits - top).sum(axis=-1))


def _numpy_graph(filters: LogitFilters, logits: np.ndarray, tokens: np.ndarray):
    """The selection graph's arithmetic in NumPy, from ``masks`` and ``row_rules`` only."""
    first, later = filters.masks(TOY_DIMS.n_vocab)
    x = logits + (first if tokens.shape[1] == SAMPLE_BEGIN else later)
    rules = filters.row_rules(tokens)
    ids = np.arange(TOY_DIMS.n_vocab)[None]
    is_ts, is_text = ids >= rules[:, 4:5], ids < rules[:, 5:6]
    blocked = (rules[:, 0:1] > 0) & is_ts | (rules[:, 1:2] > 0) & is_text
    x = np.where(blocked | is_ts & (ids < rules[:, 2:3]), -np.inf, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = np.where(is_ts, x, -np.inf)
        top = np.nan_to_num(ts.max(-1, keepdims=True), neginf=0.0)
        mass = np.log(np.exp(ts - top).sum(-1)) + top[:, 0]
        text = np.where(is_ts, -np.inf, x).max(-1)
        x = np.where(((rules[:, 3] > 0) & (mass > text))[:, None] & ~is_ts, -np.inf, x)
        top = x.max(-1, keepdims=True)
        return x.argmax(-1), (top - (np.log(np.exp(x - top).sum(-1, keepdims=True)) + top))[:, 0]


@pytest.mark.parametrize("timestamps", [True, False])
@pytest.mark.parametrize("sampled", [0, 1, 2, 5, 12])
def test_masks_and_row_rules_reproduce_the_host_filters(timestamps, sampled):
    rng = np.random.default_rng(sampled)
    filters = _filters(timestamps)
    tokens = _histories(rng, 64, sampled)
    logits = _logits(rng, 64)
    host_tokens, host_logprobs = _host_choice(filters, logits, tokens)
    tokens_np, logprobs_np = _numpy_graph(filters, logits, tokens)
    np.testing.assert_array_equal(tokens_np, host_tokens)
    np.testing.assert_allclose(logprobs_np, host_logprobs, rtol=1e-6, atol=1e-6)


def test_row_rules_name_each_timestamp_state():
    filters = _filters()
    rows = np.array(
        [
            [0, 0, 0, 11, 12],  # text only
            [0, 0, 0, 11, BEGIN + 5],  # a pair opened at 5: text blocked, timestamps >= 5
            [0, 0, 0, BEGIN + 5, BEGIN + 9],  # a pair closed at 9: timestamps blocked
            [0, 0, 0, BEGIN + 9, 40],  # text after a timestamp: timestamps > 9
        ]
    )
    rules = filters.row_rules(rows)
    assert rules[:, :4].tolist() == [
        [0, 0, 0, 1],
        [0, 1, BEGIN + 5, 1],
        [1, 0, BEGIN + 10, 1],
        [0, 0, BEGIN + 10, 1],
    ]
    assert set(rules[:, 4]) == {BEGIN} and set(rules[:, 5]) == {EOT}
    assert not _filters(timestamps=False).row_rules(rows)[:, :4].any()


def _rule_state(tokens: np.ndarray) -> np.ndarray:
    """RULE_STATE after the sampled part of ``tokens``, as the loop graphs keep it: the first
    token's penultimate counts as a timestamp."""
    state = np.zeros((len(tokens), 3), dtype=np.int64)
    for row, sampled in enumerate(tokens[:, SAMPLE_BEGIN:]):
        last, penultimate, last_stamp = 1, 1, 0  # before the first token: as after a timestamp
        for token in sampled:
            last, penultimate = int(token >= BEGIN), last
            last_stamp = int(token) if token >= BEGIN else last_stamp
        if len(sampled):  # before any token the state is not read
            state[row] = (last, penultimate, last_stamp)
    return state


def test_the_rule_state_is_what_the_host_rules_read():
    """The three integers per sequence say what ``row_rules`` derives from every token so far."""
    rng = np.random.default_rng(3)
    filters = _filters()
    for sampled in (1, 2, 5, 12):
        tokens = _histories(rng, 64, sampled)
        state = _rule_state(tokens)
        rules = filters.row_rules(tokens)
        last, penultimate, stamp = state.T
        assert (rules[:, 0] == (last & penultimate)).all()
        assert (rules[:, 1] == (last & (1 - penultimate))).all()
        expected = np.where(stamp > 0, np.where(last & (1 - penultimate), stamp, stamp + 1), 0)
        assert (rules[:, 2] == expected).all()


@pytest.fixture(scope="module")
def selection_graph():
    """``choose`` after ``row_rules`` (or without them: the first step) and the next rule state,
    compiled for the CPU: logits, mask, state, settings, ids -> tokens, logprobs, next state."""
    from max.dtype import DType
    from max.graph import DeviceRef, Graph, TensorType

    from maxwhisper_lib.engine.graphs.selection import (
        SETTINGS,
        choose,
        first_rule_state,
        next_rule_state,
        row_rules,
    )
    from maxwhisper_lib.engine.runtime import compile_graph

    device = DeviceRef.CPU()
    n_vocab = TOY_DIMS.n_vocab
    models = {}
    for first in (True, False):
        inputs = [
            TensorType(DType.float32, ["batch", n_vocab], device=device),
            TensorType(DType.float32, [n_vocab], device=device),
            TensorType(DType.int64, ["batch", 3], device=device),
            TensorType(DType.int64, [len(SETTINGS)], device=device),
            TensorType(DType.int64, [n_vocab], device=device),
        ]
        with Graph(f"test_choose_{'first' if first else 'later'}", input_types=inputs) as graph:
            logits, mask, state, settings, ids = (v.tensor for v in graph.inputs)
            rules = None if first else row_rules(state, settings)
            tokens, logprobs = choose(logits, mask, rules, ids, settings)
            after = (
                first_rule_state(tokens, n_vocab)
                if first
                else next_rule_state(state, tokens, n_vocab)
            )
            graph.output(tokens, logprobs, after)
        models[first] = compile_graph(graph, "cpu")
    return models


@pytest.mark.slow
@pytest.mark.parametrize("timestamps", [True, False])
def test_selection_and_rule_state_on_the_device_follow_the_host(selection_graph, timestamps):
    """``choose`` with the device's rule state against ``LogitFilters.apply`` + argmax on random
    logits in every timestamp state: the same tokens, log-probabilities within 1e-5, and the
    next rule state that of the history with the chosen token added."""
    rng = np.random.default_rng(0)
    filters = _filters(timestamps)
    first, later = filters.masks(TOY_DIMS.n_vocab)
    settings = filters.settings(TOY_DIMS.n_vocab, no_speech=-1)
    ids = np.arange(TOY_DIMS.n_vocab, dtype=np.int64)
    for sampled in (0, 1, 2, 7):
        tokens = _histories(rng, 48, sampled)
        logits = _logits(rng, 48)
        state = _rule_state(tokens)
        model = selection_graph[sampled == 0]
        chosen, logprobs, after = (
            out.to_numpy()
            for out in model.execute(logits, first if sampled == 0 else later, state, settings, ids)
        )
        host_tokens, host_logprobs = _host_choice(filters, logits, tokens)
        np.testing.assert_array_equal(chosen, host_tokens)
        np.testing.assert_allclose(logprobs, host_logprobs, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(after, _rule_state(np.hstack([tokens, chosen[:, None]])))
