"""The shipped CPU build's check: run on a clip and compared, in a fresh compile store."""

from __future__ import annotations

import pytest

from maxwhisper_lib.lab import verify_build


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        (["ok float32: a", "ok int8: b"], 0),
        (["ok float32: a", "FAIL int8: WER 1.00"], 1),
        ([], 1),
    ],
)
def test_the_check_fails_unless_every_dtype_is_ok(monkeypatch, capsys, lines, code):
    monkeypatch.setattr(verify_build, "check_shipped", lambda model, dtypes: lines)
    assert verify_build.main(["--dtypes", "float32,int8"]) == code
    assert capsys.readouterr().out.strip() == "\n".join(lines)


@pytest.mark.slow
def test_the_committed_shipped_build_transcribes_like_openai_whisper():
    """The package's precompiled tiny.en (float32 and int8), loaded in a store of its own so
    that no native build stands in for it: jfk token-identical to openai-whisper in float32,
    int8 within its WER bound."""
    check = verify_build.check_in_fresh_store("tiny.en", ["float32", "int8"])
    assert check.returncode == 0, check.stdout + check.stderr[-2000:]
    lines = check.stdout.strip().splitlines()
    assert lines[0].startswith("ok float32: jfk token-identical to openai-whisper")
    assert lines[1].startswith("ok int8: WER 0.00")
    assert "as shipped with MAX-Whisper" in check.stderr
