"""Whisper's audio constants, in one place: openai-whisper's ``whisper.audio`` block (a test
holds them equal) plus the two derived ones its decoding uses, defined here so that the MAX
path imports neither torch nor MAX to know them."""

from __future__ import annotations

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30
"""Seconds of audio in one window."""
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE
"""Samples in one 30 s window; ``transcribe`` appends this many zeros before the log-mel."""
N_FRAMES = N_SAMPLES // HOP_LENGTH
"""Log-mel frames in one encoder window: 3000."""
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN
"""Audio-feature positions (timestamp steps) per second: 50."""
INPUT_STRIDE = 2
"""Mel frames per audio-feature position (and per timestamp step): the encoder's second
convolution has stride 2."""
TIME_PRECISION = INPUT_STRIDE * HOP_LENGTH / SAMPLE_RATE
"""Seconds per timestamp token: 0.02."""
