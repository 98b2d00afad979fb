"""The seed examples are scripts, run by `conformance/test_examples.py`: pytest must not import them, neither
to collect tests nor for `--doctest-modules` (importing one would run it)."""

collect_ignore_glob = ["*.py"]
