"""WER and transcript comparison (``maxwhisper_lib.lab.scoring``) on hand-made results: what the
notebooks and the benchmark report as token identity and accuracy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from maxwhisper_lib.decoding.text import normalize, word_error_rate
from maxwhisper_lib.lab.manifest import Clip
from maxwhisper_lib.lab.scoring import (
    TranscriptMismatch,
    Transcripts,
    assert_token_identical,
    comparison_table,
    first_difference,
    identity_summary,
    wer_table,
)


def result(tokens: list[int], text: str, temperature: float = 0.0, end: float = 2.0) -> dict:
    segment = {"start": 0.0, "end": end, "tokens": tokens, "temperature": temperature}
    return {"text": text, "segments": [segment]}


def clip(name: str, reference: str = "") -> Clip:
    return Clip(name, Path(f"{name}.wav"), 2.0, reference, "")


def test_normalize_and_wer_follow_openai_whisper():
    assert normalize("Mr. Smith, it's 10 o'clock!") == normalize("mister smith it is 10 o'clock")
    assert word_error_rate(["the cat sat"], [" The cat, sat."]) == 0.0
    assert word_error_rate(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(
        1 / 6
    )
    # corpus level: errors over all reference words, clips without a reference left out
    wer = word_error_rate(["a b c d", "", "e f"], ["a b c x", "anything", "e f"])
    assert wer == pytest.approx(1 / 6)
    assert math.isnan(word_error_rate(["", "  "], ["x", "y"]))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [([1, 2, 3], [1, 2, 3], None), ([1, 2, 3], [1, 5, 3], 1), ([1, 2], [1, 2, 3], 2), ([], [4], 0)],
)
def test_first_difference(a, b, expected):
    assert first_difference(a, b) == expected


@pytest.fixture
def runs():
    clips = [clip("same", "hello world"), clip("differs", "red green blue"), clip("sampled")]
    ours = Transcripts(
        "MAX",
        {
            "same": result([1, 2], " hello world"),
            "differs": result([1, 2, 9], " red green pink"),
            "sampled": result([7], " x", temperature=0.2),
        },
        {"same": 0.1, "differs": 0.2, "sampled": 0.3},
    )
    theirs = Transcripts(
        "openai-whisper",
        {
            "same": result([1, 2], " hello world"),
            "differs": result([1, 2, 3], " red green blue"),
            "sampled": result([8], " y"),
        },
        {"same": 0.5, "differs": 0.6, "sampled": 0.7},
    )
    return clips, ours, theirs


def test_comparison_table_and_identity_summary(runs):
    clips, ours, theirs = runs
    table = comparison_table(clips, ours, theirs).set_index("clip")
    assert table.loc["same", "token-identical"] and not table.loc["differs", "token-identical"]
    assert table.loc["differs", "first different token"] == 2
    assert table.loc["sampled", "sampled"]
    assert table.loc["differs", "WER MAX"] == pytest.approx(1 / 3)
    assert table.loc["differs", "WER openai-whisper"] == 0.0
    summary = identity_summary(table.reset_index())
    assert summary.splitlines() == [
        "1/2 clips token-identical to openai-whisper "
        "(1 clip(s) fell back to sampling: not comparable)",
        "  differs: first different token at index 2",
    ]
    with pytest.raises(
        TranscriptMismatch, match="1 clip\\(s\\) differ from openai-whisper: differs"
    ):
        assert_token_identical(table.reset_index())


def test_segment_times_count_for_identity(runs):
    clips, ours, theirs = runs
    ours.results["differs"] = result([1, 2, 3], " red green blue", end=2.5)
    table = comparison_table(clips, ours, theirs)
    with pytest.raises(TranscriptMismatch, match="differs"):
        assert_token_identical(table)


def test_wer_table_per_clip_and_overall(runs):
    clips, ours, theirs = runs
    table = wer_table(clips, ours, theirs)
    assert list(table.index) == ["same", "differs", "overall"]  # clips with a reference
    assert table.loc["overall", "WER MAX"] == pytest.approx(1 / 5)
    assert table.loc["overall", "WER openai-whisper"] == 0.0
