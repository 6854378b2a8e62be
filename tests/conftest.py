"""Shared fixtures: real tiny.en weights, one MAX model per test session, the jfk clip."""

from __future__ import annotations

import numpy as np
import pytest

from maxwhisper_lib.audio.load import load_audio
from maxwhisper_lib.lab.manifest import clip


@pytest.fixture(scope="session")
def tiny_weights():
    """tiny.en (float16 from the embedded CTranslate2 package), extracted once into weights/."""
    from maxwhisper_lib.checkpoints import load_weights

    return load_weights("tiny.en")


@pytest.fixture(scope="session")
def max_tiny(tiny_weights):
    """MaxWhisper tiny.en on CPU in float32 (graphs compile once per session, or load from cache)."""
    from maxwhisper_lib.engine.model import MaxWhisper

    return MaxWhisper(tiny_weights, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def torch_tiny(tiny_weights):
    """openai-whisper's PyTorch tiny.en on the same weights (the reference)."""
    from maxwhisper_lib.decoding.reference import TorchBackend

    return TorchBackend(tiny_weights)


@pytest.fixture(scope="session")
def base_weights():
    """Multilingual base (from its two pip packages)."""
    from maxwhisper_lib.checkpoints import load_weights

    return load_weights("base")


@pytest.fixture(scope="session")
def max_base(base_weights):
    """The session's one MAX base model (its graphs compile once, minutes when cold)."""
    from maxwhisper_lib.engine.model import MaxWhisper

    return MaxWhisper(base_weights, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def jfk_clip():
    return clip("jfk")


@pytest.fixture(scope="session")
def jfk_audio(jfk_clip) -> np.ndarray:
    return load_audio(jfk_clip.path)


# ------------------------------------------------------------------ the fast tier


@pytest.fixture
def replayed_log_mels(monkeypatch) -> list:
    """Log-mel pieces of 5 s with seven kept (a window and a piece), so that a file's
    spectrogram past 35 s is computed again as windows use it (:class:`~maxwhisper_lib.audio.features.ReplayedLogMel`); the list collects
    every such spectrogram made while the test runs."""
    import maxwhisper_lib.audio.features as mel

    made: list = []
    init = mel.ReplayedLogMel.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(mel, "PIECE_FRAMES", 500)
    monkeypatch.setattr(mel, "KEEP_FRAMES", 3500)
    monkeypatch.setattr(mel.ReplayedLogMel, "__init__", spy)
    return made


def pytest_addoption(parser):
    parser.addoption(
        "--fast",
        action="store_true",
        help="the fast tier (make test-fast): leave out the tests marked slow; any other test "
        "that compiles a MAX graph or loads a compiled model fails (it belongs in the slow tier)",
    )


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--fast"):
        return
    slow = [item for item in items if "slow" in item.keywords]
    config.hook.pytest_deselected(items=slow)
    items[:] = [item for item in items if "slow" not in item.keywords]


@pytest.fixture(scope="session", autouse=True)
def fast_tier_compiles_nothing(request):
    """Under ``--fast``, MAX compiles and compiled-model loads raise: the tier stays fast on a
    machine whose caches are empty as on one whose caches are full."""
    if not request.config.getoption("--fast"):
        yield
        return
    from max.engine import InferenceSession

    from maxwhisper_lib.engine import compiled

    def refuse(*args, **kwargs):
        raise AssertionError("this test compiles a MAX graph: mark it slow (pytest.mark.slow)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(InferenceSession, "compile", refuse)
        patch.setattr(InferenceSession, "load", refuse)
        patch.setattr(compiled, "load_models", refuse)
        yield
