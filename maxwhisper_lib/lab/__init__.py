"""The lab: what proves the product (checks, benchmarks, plots, the notebook pipeline). The
product never imports it (tests/test_front_door.py)."""
