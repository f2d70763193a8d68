"""Exceptions raised by :mod:`vae_zoo.datasets`."""

from __future__ import annotations


class DatasetNotAvailableError(FileNotFoundError):
    """A dataset's source files are missing on this machine; the message says how to get them."""


class ChecksumError(ValueError):
    """A source file does not match its pinned sha256 (corrupt, truncated or a different file)."""
