"""The host's two errors: a function or app that cannot be loaded, and an invocation that ran
past functionTimeout."""

from __future__ import annotations


class FunctionLoadError(Exception):
    """An app or function that cannot be loaded (import error, unsupported binding, ...)."""


class FunctionTimeoutError(Exception):
    """An invocation ran past host.json's functionTimeout."""
