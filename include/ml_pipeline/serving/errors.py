"""Errors raised while a model version is loaded for serving (fetch, compile, verify)."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """The alias does not resolve, or the model cannot be loaded or served."""
