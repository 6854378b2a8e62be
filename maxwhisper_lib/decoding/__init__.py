"""Decoding: openai-whisper's options, logit filters and decoders, long-form transcription,
the tokenizer, word timestamps, transcript writers, the PyTorch reference engine."""
