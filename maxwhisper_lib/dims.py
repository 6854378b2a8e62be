"""Model dimensions: the one description of a Whisper network's shape."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class ModelDimensions:
    """Whisper hyper-parameters, field for field as in openai-whisper's ``ModelDimensions``."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    @property
    def is_multilingual(self) -> bool:
        """Multilingual vocabularies have 51865+ tokens; English-only ones 51864."""
        return self.n_vocab >= 51865

    @property
    def num_languages(self) -> int:
        """Number of language tokens, as openai-whisper derives it from the vocabulary size."""
        return self.n_vocab - 51765 - int(self.is_multilingual)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelDimensions:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"model dimensions lack {', '.join(missing)}")
        return cls(**{n: int(data[n]) for n in names})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelDimensions:
        return cls.from_dict(json.loads(Path(path).read_text()))
