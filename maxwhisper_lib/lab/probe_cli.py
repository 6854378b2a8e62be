"""The command line of the lab's one-model probes: ``--model NAME [--output FILE.json]``, the
result printed as JSON and written (atomically) where asked."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from ..atomic import atomic_text_file


def probe_main(prog: str, probe: Callable[[str], dict], argv: list[str] | None = None) -> int:
    """Run ``probe(model)`` for ``argv``'s ``--model`` (default tiny.en); print its JSON and
    write it to ``--output`` if given. Returns the exit status."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    text = json.dumps(probe(args.model), indent=2)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_text_file(args.output) as file:
            file.write(text + "\n")
    print(text)
    return 0
