"""The memory-floor accounting (bytes a decoder step reads) and the bandwidth probe's sizing:
fast, nothing compiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from maxwhisper_lib.checkpoints.synthetic import TOY_DIMS, random_weights
from maxwhisper_lib.engine.model import MaxWhisper
from maxwhisper_lib.lab import roofline


@pytest.fixture(scope="module")
def toy16():
    return random_weights(TOY_DIMS, seed=1, dtype="float16")


def test_decoder_step_bytes_count_what_a_step_reads(toy16):
    dims = TOY_DIMS
    model = MaxWhisper(toy16, device="cpu")
    per_block = sum(
        int(np.prod(s)) for s in [(48, 16), (16, 16), (16, 16), (16, 16), (64, 16), (16, 64)]
    )
    weights16 = 2 * (dims.n_vocab * 16 + dims.n_text_layer * per_block)
    small = sum(
        v.nbytes
        for k, v in model.registry.items()
        if k.startswith("decoder.")
        and v.dtype == np.float32
        and ".cross_attn.kv." not in k
        and k != "decoder.positional_embedding"
    )
    one = roofline.decoder_step_bytes(model, batch=1)
    assert one["weights"] == weights16 + small
    kv = dims.n_text_layer * 2 * dims.n_audio_ctx * 16 * 4
    cache = dims.n_text_layer * 2 * dims.n_text_ctx * 16 * 4
    assert one["cross_attention_kv"] == kv and one["self_attention_cache"] == cache
    assert one["logits"] == dims.n_vocab * 4
    assert one["total"] == sum(v for k, v in one.items() if k != "total")
    beams = roofline.decoder_step_bytes(model, batch=5, windows=1)
    assert beams["cross_attention_kv"] == kv  # beams of one window share its keys/values
    assert beams["self_attention_cache"] == 5 * cache
    filled = roofline.decoder_step_bytes(model, batch=1, cached=9)  # 9 cached + 1 new position
    assert filled["self_attention_cache"] == cache * 10 // dims.n_text_ctx
    classic = MaxWhisper(toy16, device="cpu", row_kernels=False)
    copies = roofline.decoder_step_bytes(classic, batch=5, windows=1)
    assert copies["cross_attention_kv"] == 5 * kv  # one copy per sequence without the kernels
    assert copies["weights"] > one["weights"]  # float32, and a separate logits matrix


def test_numpy_stream_reports_bytes_and_rates():
    results = roofline.numpy_stream(4 << 20, repeats=2, threads=2)
    assert [r.method for r in results] == ["numpy copy", "numpy triad (2 passes)", "numpy read"]
    assert results[2].bytes_moved == results[0].bytes_moved // 2  # read only: one array
    for r in results:
        assert r.seconds > 0 and r.gb_per_s == pytest.approx(r.bytes_moved / r.seconds / 1e9)
    assert roofline.best_bandwidth(results) == max(r.gb_per_s for r in results)


@pytest.mark.slow
def test_max_stream_reports_copy_triad_and_read():
    results = roofline.max_stream(4 << 20, repeats=2)
    assert [r.method for r in results] == ["max copy", "max triad", "max read"]
    size = results[0].bytes_moved // 2
    assert [r.bytes_moved for r in results] == [2 * size, 3 * size, size]
    for r in results:
        assert r.seconds > 0 and r.gb_per_s == pytest.approx(r.bytes_moved / r.seconds / 1e9)


def test_probe_arrays_outgrow_the_cache_when_the_working_set_does():
    mb = 1 << 20
    # 75 MB streamed per step past a 32 MB cache: memory, four times the cache per array
    assert roofline.probe_array_bytes(75 * mb, 32 * mb) == 128 * mb
    # a working set that fits the cache is probed at its own size, a third per array
    assert roofline.probe_array_bytes(24 * mb, 32 * mb) == 8 * mb
    assert roofline.probe_array_bytes(75 * mb, None) == 25 * mb
    # a huge cache is capped; a huge working set still gets its third
    assert roofline.probe_array_bytes(900 * mb, 512 * mb) == roofline.PROBE_ARRAY_CAP
    assert roofline.probe_array_bytes(6000 * mb, 512 * mb) == 2000 * mb


def test_last_level_cache_is_read_from_sysfs():
    size = roofline.last_level_cache_bytes()
    if not Path("/sys/devices/system/cpu/cpu0/cache").exists():
        assert size is None
    else:
        assert size is not None and size >= 256 << 10  # at least a second-level cache


class _RecordingBackend:
    """A backend whose decoding session logs every call (engine name, tokens fed)."""

    def __init__(self, name: str, log: list[tuple[str, int]]) -> None:
        self.name, self.log = name, log

    def embed_audio(self, mel):
        return mel

    def start_decoding(self, audio, rows):
        backend = self

        class Session:
            def logits(self, tokens):
                backend.log.append((backend.name, int(np.asarray(tokens).shape[1])))
                return np.zeros((len(rows), 4), np.float32)

        return Session()


def test_decoder_steps_time_engines_in_turns_after_an_untimed_step():
    log: list[tuple[str, int]] = []
    engines = {name: _RecordingBackend(name, log) for name in ("a", "b")}
    prompt = [1, 2, 3]
    rows = roofline.decoder_steps(
        engines, np.zeros((80, 3000), np.float32), prompt, batch_sizes=[2], steps=6, turn=4
    )
    assert [(r.engine, r.batch) for r in rows] == [("a", 2), ("b", 2)]
    steps = [name for name, fed in log if fed == 1]
    assert [name for name, fed in log if fed == len(prompt)] == ["a", "b"]  # each prompt once
    # two turns each (6 steps in turns of 4), every turn one untimed step and four timed
    assert steps == ["a"] * 5 + ["b"] * 5 + ["a"] * 5 + ["b"] * 5
    # the median timed step sees the prompt and half of the ten steps before it
    assert roofline.median_cached_positions(len(prompt), 6, 4) == len(prompt) + 5


def test_int8_mode_steps_read_float16_cross_keys_values(toy16):
    """The int8 mode stores each window's cross keys/values in float16: half the bytes."""
    dims = TOY_DIMS
    model = MaxWhisper(toy16, device="cpu", dtype="int8")
    kv = dims.n_text_layer * 2 * dims.n_audio_ctx * 16 * 2
    assert roofline.decoder_step_bytes(model, batch=3)["cross_attention_kv"] == 3 * kv
    cross = next(r for r in roofline.graph_bytes(model, batch=2) if r["graph"] == "cross_kv")
    features = 2 * dims.n_audio_ctx * dims.n_audio_state * 4
    assert cross["activation_mb"] * 1e6 == pytest.approx(features + 2 * kv)
