"""``python -m maxwhisper_lib AUDIO... [options]``: the ``maxwhisper`` command line."""

from .cli import main

raise SystemExit(main())
