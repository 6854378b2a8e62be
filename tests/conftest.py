"""Shared fixtures: real tiny.en weights, one MAX model per test session, the jfk clip."""

from __future__ import annotations

import numpy as np
import pytest

from maxwhisper_lib.audio import load_audio
from maxwhisper_lib.manifest import clip


@pytest.fixture(scope="session")
def tiny_weights():
    """tiny.en (float16 from the embedded CTranslate2 package), extracted once into weights/."""
    from maxwhisper_lib.weights import load_weights

    return load_weights("tiny.en")


@pytest.fixture(scope="session")
def max_tiny(tiny_weights):
    """MaxWhisper tiny.en on CPU in float32 (graphs compile once per session, or load from cache)."""
    from maxwhisper_lib.model import MaxWhisper

    return MaxWhisper(tiny_weights, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def torch_tiny(tiny_weights):
    """openai-whisper's PyTorch tiny.en on the same weights (the reference)."""
    from maxwhisper_lib.reference import TorchBackend

    return TorchBackend(tiny_weights)


@pytest.fixture(scope="session")
def jfk_clip():
    return clip("jfk")


@pytest.fixture(scope="session")
def jfk_audio(jfk_clip) -> np.ndarray:
    return load_audio(jfk_clip.path)
