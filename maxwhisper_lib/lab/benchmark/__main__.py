"""``python -m maxwhisper_lib.lab.benchmark``: the benchmark from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...choices import DEVICE_CHOICES
from .engines import ENGINES, as_list
from .results import default_output_dir
from .runs import DEFAULT_BATCH_SIZES, DEFAULT_LENGTHS, run_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m maxwhisper_lib.lab.benchmark", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--dtype", default="float32", help="MAX's dtype (GPU: float16/bfloat16)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--manifest", default=None)
    parser.add_argument("--clips", default=None, help="comma-separated clip ids (default all)")
    parser.add_argument(
        "--lengths", default=",".join(map(str, DEFAULT_LENGTHS)), help="seconds; '' to skip"
    )
    parser.add_argument(
        "--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)), help="'' to skip"
    )
    parser.add_argument("--batch-count", type=int, default=16, help="files in the batch test")
    parser.add_argument(
        "--roofline-batches", default="1,2,4,8,16", help="decoder-step batch sizes; '' to skip"
    )
    parser.add_argument("--output", type=Path, default=None, help="default: reports/runs/benchmark")
    args = parser.parse_args(argv)
    result = run_benchmark(
        model=args.model,
        device=args.device,
        engines=as_list(args.engines),
        repeats=args.repeats,
        manifest=args.manifest,
        clips=as_list(args.clips) or None,
        lengths=[float(x) for x in as_list(args.lengths)],
        batch_sizes=[int(x) for x in as_list(args.batch_sizes)],
        batch_count=args.batch_count,
        dtype=args.dtype,
        roofline_batches=[int(x) for x in as_list(args.roofline_batches)],
    )
    files = result.save(args.output or default_output_dir())
    print(result.ratios_table().to_string(index=False))
    print(result.wer_verdict())
    print(f"written: {', '.join(str(p) for p in files.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
