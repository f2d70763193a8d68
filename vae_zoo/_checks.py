"""Argument checks for vae_zoo, with messages that name the argument and say what to do.

vae_zoo uses only the public API of cka_sim, so it keeps its own small copy of the vocabulary
of ``cka_sim._validation`` (same wording).
"""

from __future__ import annotations

import numbers
from typing import Any


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError naming ``name`` and listing them."""
    if not isinstance(value, str) or value not in choices:
        listed = " or ".join(repr(c) for c in choices)
        raise ValueError(f"unknown {name} {value!r}: {name} must be {listed}; got {value!r}")
    return value


def check_positive_int(value: Any, name: str) -> int:
    """An integer of at least 1, or a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1; got {value}")
    return int(value)
