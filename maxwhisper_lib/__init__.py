"""MAX-Whisper: OpenAI's Whisper on Modular's MAX.

import maxwhisper_lib as mw
model = mw.load_model("tiny.en")
print(model.transcribe("data/jfk.flac")["text"])
segments, info = model.stream("data/jfk.flac")
live = model.live()   # live.feed(samples) as audio arrives, live.finish() at the end
"""

__version__ = "0.1.0"  # first: modules the front door imports read it

from .api import QUANTIZATIONS, TranscriptionInfo, WhisperModel, available_models, load_model
from .decoding.live import LiveOptions, LiveUpdate
from .errors import AudioError, DecodingOptionsError, MaxWhisperError, WeightsError

__all__ = [
    "QUANTIZATIONS",
    "AudioError",
    "DecodingOptionsError",
    "LiveOptions",
    "LiveUpdate",
    "MaxWhisperError",
    "TranscriptionInfo",
    "WeightsError",
    "WhisperModel",
    "__version__",
    "available_models",
    "load_model",
]
