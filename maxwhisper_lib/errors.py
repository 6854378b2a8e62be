"""Exceptions with messages a user can act on."""


class MaxWhisperError(Exception):
    """Base class of every error this package raises on purpose."""


class WeightsError(MaxWhisperError):
    """Weights that are missing, corrupt, of an unknown format or inconsistent with their dims."""


class AudioError(MaxWhisperError):
    """Audio that is missing, empty, corrupt, silent or not audio at all."""


class DecodingOptionsError(MaxWhisperError, ValueError):
    """Decoding or transcription parameters that contradict each other or the model."""
