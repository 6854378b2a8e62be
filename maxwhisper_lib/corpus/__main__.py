"""``python -m maxwhisper_lib.corpus INPUT --output_dir DIR [options]``."""

from .cli import main

raise SystemExit(main())
