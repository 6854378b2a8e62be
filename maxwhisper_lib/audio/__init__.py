"""Audio in: decoding files (PyAV), the log-mel front end, Silero VAD, chunking into spans."""
