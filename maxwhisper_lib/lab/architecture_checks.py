"""Every official Whisper architecture on random weights: MAX against openai-whisper's PyTorch.

No checkpoint larger than base can be downloaded here, so each architecture is checked at its
real widths, heads, mel bins and vocabulary on random weights, with both stacks cut to a few
blocks (compile time): MAX's encoder output on a real log-mel window, and the decoder's logits
for a prompt and then one cached step, against openai-whisper's modules holding the same
weights (float32; the tests hold them to 1e-4). ``tests/test_architectures.py`` runs them;
notebook 02 shows the committed report or runs the ones it is asked for.

    python -m maxwhisper_lib.lab.architecture_checks [--names base,large-v3,...]
                                                 [--output reports/cpu-2core-architectures]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .checks import clip_window, compare

CHECKED = ("base", "small", "medium", "large-v3", "large-v3-turbo", "distil-large-v3")
"""The architectures checked by default (tiny.en and base run at full depth elsewhere)."""
MAX_LAYERS = {"distil-large-v3": 3}
"""Blocks per stack (default 2); distil-large-v3 at 3 keeps 3 encoder blocks against its own
2 decoder blocks, stacks of different depths as in the real checkpoint."""
TOLERANCE = 1e-4
CHECK_GRAPHS = ("encoder", "cross_kv", "decoder_step")
"""The graphs a check runs, the only ones it compiles (not the front end, beam reordering or
word alignment: a cold compile 20-30% shorter, measured on base and small)."""


def check_architecture(name: str, mel: np.ndarray | None = None, seed: int = 7) -> dict:
    """MAX against PyTorch for architecture ``name`` (random weights, cut to
    :data:`MAX_LAYERS` blocks): relative errors of the encoder output, the prompt's logits and
    one cached step's logits, and the dims checked."""
    from ..checkpoints.catalog import official_dims
    from ..checkpoints.synthetic import random_weights
    from ..decoding.reference import TorchBackend
    from ..decoding.tokenizer import get_tokenizer
    from ..engine.model import MaxWhisper

    dims = official_dims(name, max_layers=MAX_LAYERS.get(name, 2))
    weights = random_weights(dims, seed=seed, name=f"random-{name}")
    start = time.perf_counter()
    ours = MaxWhisper(weights, device="cpu", only_graphs=CHECK_GRAPHS)
    theirs = TorchBackend(weights)
    mel = clip_window("jfk", dims.n_mels)[None] if mel is None else mel
    features, reference = ours.embed_audio(mel), theirs.embed_audio(mel)
    _, encoder_error = compare(features.numpy(), reference.numpy())
    tokenizer = get_tokenizer(dims, language="en", task="transcribe")
    prompt = np.array([[*tokenizer.sot_sequence, *tokenizer.encode(" And so my fellow")]])
    rows = np.zeros(1, dtype=np.int64)
    sessions = ours.start_decoding(features, rows), theirs.start_decoding(reference, rows)
    positions = tuple(range(prompt.shape[1]))
    errors, shapes = [], []
    for tokens, where in ((prompt, positions), (prompt[:, -1:], (-1,))):
        a, b = (session.logits(tokens, positions=where) for session in sessions)
        shapes.append(a.shape)
        errors.append(compare(a, b)[1])
    return {
        "architecture": name,
        "n_mels": dims.n_mels,
        "width": dims.n_audio_state,
        "heads": dims.n_audio_head,
        "n_vocab": dims.n_vocab,
        "blocks": f"{dims.n_audio_layer} + {dims.n_text_layer}",
        "encoder_rel_error": encoder_error,
        "prompt_logits_rel_error": errors[0],
        "step_logits_rel_error": errors[1],
        "logits_shapes": [tuple(int(d) for d in s) for s in shapes],
        "passed": max(encoder_error, *errors) < TOLERANCE,
        "seconds": time.perf_counter() - start,
    }


def main(argv: Sequence[str] | None = None) -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", default=",".join(CHECKED))
    parser.add_argument("--output", type=Path, default=None, help="report folder")
    args = parser.parse_args(argv)
    rows = [check_architecture(name) for name in args.names.split(",")]
    table = pd.DataFrame(rows).drop(columns=["logits_shapes"])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.output / "architectures.csv", index=False)


if __name__ == "__main__":
    main()
