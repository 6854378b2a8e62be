"""Check the shipped portable CPU build before it ships: transcribe jfk with it and compare.

MAX 26.7 compiling for ``x86-64-v3`` on an AVX-512 host (``max.driver.set_virtual_cpu_target``)
made a build that transcribes jfk as "Thank you." (measured 2026-12-04 on an Intel Xeon, with
MAX-Whisper's Mojo kernels and without them), while the same sources compiled there natively,
or for ``x86-64-v3`` on an AVX2 host, give openai-whisper's tokens. ``make precompile-cpu``
therefore runs this check on what it wrote (:func:`check_in_fresh_store`), and so can anyone:

    python -m maxwhisper_lib.lab.verify_build [--model tiny.en] [--dtypes float32,int8]

float32 must be token-identical to openai-whisper float32 on the same weights; int8, which
rounds differently by design, must stay within :data:`INT8_MAX_WER` of MAX float32's words.
The check loads the package's shipped files through the compiled-model store; run it with an
empty store (``MODULAR_CACHE_DIR`` a new folder, as :func:`check_in_fresh_store` does), or a
native build kept there would be checked instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence

CLIP = "jfk"
INT8_MAX_WER = 0.2
"""The int8 build's largest word error rate against MAX float32's transcript of :data:`CLIP`
(a sound build: 0; the broken one above: 1.0)."""


def check_shipped(model: str, dtypes: Sequence[str]) -> list[str]:
    """Transcribe :data:`CLIP` with the shipped build of ``model`` in each of ``dtypes``
    (``float32`` first, the reference of ``int8``); one line per dtype, each starting with
    ``ok`` or ``FAIL``."""
    import whisper

    from ..audio.load import load_audio
    from ..checkpoints import checkpoint_path, load_weights
    from ..decoding.reference import load_openai_whisper
    from ..decoding.text import word_error_rate
    from ..decoding.transcribe import transcribe, transcript_tokens
    from ..engine import compiled
    from ..engine.model import MaxWhisper
    from .manifest import clip

    if not compiled.runs_portable_cpu_code():
        return [f"FAIL this CPU cannot run {compiled.PORTABLE_CPU_TARGET} code: nothing checked"]
    weights = load_weights(model)
    audio = load_audio(clip(CLIP).path)
    options = {"temperature": 0.0}
    if not weights.dims.is_multilingual:
        options["language"] = "en"
    texts: dict[str, str] = {}
    lines = []
    for dtype in sorted(dtypes, key=lambda d: d != "float32"):
        ours = MaxWhisper(weights, device="cpu", dtype=dtype)
        result = transcribe(ours, audio, **options)
        texts[dtype] = result["text"]
        if not ours.from_store:
            lines.append(f"FAIL {dtype}: no shipped build for these sources (it was compiled)")
        elif dtype == "float32":
            reference = load_openai_whisper(checkpoint_path(model), weights=weights)
            theirs = whisper.transcribe(reference, audio, fp16=False, **options)
            same = transcript_tokens(result) == transcript_tokens(theirs)
            verdict = "ok" if same else "FAIL"
            lines.append(
                f"{verdict} float32: {CLIP} {'' if same else 'not '}token-identical to "
                f"openai-whisper ({result['text'].strip()!r})"
            )
        else:
            anchor = texts.get("float32") or clip(CLIP).reference
            wer = word_error_rate([anchor], [result["text"]])
            verdict = "ok" if wer <= INT8_MAX_WER else "FAIL"
            lines.append(
                f"{verdict} {dtype}: WER {wer:.2f} against float32's words "
                f"(at most {INT8_MAX_WER}) ({result['text'].strip()!r})"
            )
    return lines


def check_in_fresh_store(model: str, dtypes: Sequence[str]) -> subprocess.CompletedProcess:
    """:func:`check_shipped` in a process of its own whose compiled-model store starts empty, so
    that the shipped files are what runs; its output is captured."""
    with tempfile.TemporaryDirectory(prefix="maxwhisper-verify-") as store:
        command = [sys.executable, "-m", __name__, "--model", model, "--dtypes", ",".join(dtypes)]
        return subprocess.run(
            command,
            env={**os.environ, "MODULAR_CACHE_DIR": store},
            capture_output=True,
            text=True,
            check=False,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--dtypes", default="float32,int8", help="comma-separated")
    args = parser.parse_args(argv)
    lines = check_shipped(args.model, [d for d in args.dtypes.split(",") if d])
    print("\n".join(lines))
    return 0 if lines and all(line.startswith("ok") for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
