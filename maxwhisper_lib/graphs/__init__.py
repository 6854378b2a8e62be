"""MAX Graph construction for Whisper: building blocks, encoder and decoder graphs.

Nothing here binds weights or runs anything: graphs name their weights (see
:mod:`maxwhisper_lib.weight_mapping`) and :mod:`maxwhisper_lib.runtime` compiles them.
"""
