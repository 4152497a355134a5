"""The benchmark suite: `python -m bench` (or `make bench`).

Every figure is a ratio against a *floor*: the bare storage (and ACS) operations the same work
needs, done with the same SDKs against the same Azurite and emulator, at the same concurrency,
in the same run. See bench/README.md for what each figure and floor means.
"""
