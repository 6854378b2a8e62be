"""MAX-Whisper: OpenAI's Whisper speech recognition on Modular's MAX Graph."""

__version__ = "0.1.0"
