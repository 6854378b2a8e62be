"""The long-audio benchmark's bookkeeping: WAV round trip, speed-ups, memory ratios, verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from maxwhisper_lib.audio.constants import SAMPLE_RATE
from maxwhisper_lib.audio.load import load_audio
from maxwhisper_lib.lab.benchmark import BenchmarkError, ClipAudio, long_reference
from maxwhisper_lib.lab.long_audio import (
    LongAudioResult,
    Probe,
    load_long_result,
    run_long_benchmark,
    write_wav,
)
from maxwhisper_lib.lab.manifest import clip


def test_the_long_file_decodes_to_the_samples_it_was_built_from(tmp_path):
    samples = load_audio(clip("jfk").path)
    path = write_wav(np.concatenate([samples, samples]), tmp_path / "long.wav")
    np.testing.assert_array_equal(load_audio(path), np.concatenate([samples, samples]))


def _result() -> LongAudioResult:
    probes = [
        Probe("max", 10.0, 30.0, 1000.0, 900.0, wer=5.5),
        Probe("max-batched", 10.0, 10.0, 1100.0, 900.0, wer=6.75),
        Probe("faster-whisper-int8", 10.0, 40.0, 700.0, 600.0, wer=6.0),
        Probe("faster-whisper-int8-batched", 10.0, 15.0, 700.0, 600.0, wer=10.5),
        Probe("max", 5.0, 15.0, 1000.0, 900.0),
        Probe("max", 60.0, 180.0, 1150.0, 900.0),
        Probe("max-batched", 5.0, 5.0, 1000.0, 900.0),
        Probe("max-batched", 60.0, 60.0, 1300.0, 900.0),
    ]
    config = {"engines": ["max", "max-batched"], "minutes": [5.0, 10.0], "memory_minutes": [60.0]}
    wer = [
        {"clip": "a", "batched_minus_sequential": 0.5},
        {
            "clip": "b",
            "batched_minus_sequential": 1.5,
            "peer": "faster-whisper-fp32",
            "peer_batched_minus_sequential": 1.25,
        },
    ]
    return LongAudioResult(config, {"cpu": "test"}, probes, wer)


def test_speedups_memory_ratios_and_verdicts():
    result = _result()
    assert result.speedups() == {
        "max": 3.0,
        "faster-whisper-int8": 4.0,
        "faster-whisper-int8-batched": 1.5,
    }
    assert result.file_wer_cost() == {"max-batched": 1.25, "faster-whisper-int8-batched": 4.5}
    assert result.memory_ratios() == {"max": 1.15, "max-batched": 1.3}
    assert result.verdicts() == {
        "max-batched vs max": "3.0x (target 3.0x: met)",
        "max-batched vs faster-whisper-int8-batched": "1.5x (target 2.0x: missed)",
        "max memory": "1.15x (target 1.2x: met)",
        "max-batched memory": "1.3x (target 1.2x: missed)",
        "10-min file: max-batched WER cost": "+1.25 points (target 1.0: missed)",
        "10-min file: faster-whisper-int8-batched WER cost": "+4.50 points (same check)",
        "batched WER cost": "+1.50 points (target 1.0: missed)",
        "faster-whisper-fp32 batched WER cost": "+1.25 points (same check)",
    }


def test_results_survive_a_round_trip(tmp_path):
    import json

    path = tmp_path / "long_audio.json"
    path.write_text(json.dumps(_result().to_dict()))
    again = load_long_result(path)
    assert again.verdicts() == _result().verdicts()
    assert again.probes == _result().probes


def test_a_file_without_a_sequential_wer_has_no_wer_cost():
    result = _result()
    result.probes = [p for p in result.probes if p.engine != "max"]
    assert result.file_wer_cost() == {"faster-whisper-int8-batched": 4.5}
    assert not any("max-batched WER" in name for name in result.verdicts())


def test_the_long_files_reference_follows_its_clips():
    one, two = np.zeros(SAMPLE_RATE, np.float32), np.zeros(2 * SAMPLE_RATE, np.float32)
    clips = [ClipAudio("a", one, "alpha beta"), ClipAudio("b", two, "gamma")]
    assert long_reference(clips, 1) == "alpha beta"
    # a clip the cut splits keeps its whole reference; the clips repeat in turn
    assert long_reference(clips, 1.5) == "alpha beta gamma"
    assert long_reference(clips, 4) == "alpha beta gamma alpha beta"
    with pytest.raises(BenchmarkError, match="no audio"):
        long_reference(clips, 0)


def test_unknown_engines_are_refused_before_any_work():
    with pytest.raises(BenchmarkError, match="unknown long-audio engine"):
        run_long_benchmark(engines=["max", "whisperx"])
