"""Fuzz inputs for the packet parsers: valid packets cut short or with a few bytes changed."""

from __future__ import annotations

import random
from collections.abc import Sequence


def truncated(rng: random.Random, valid: Sequence[bytes]) -> bytes:
    src = rng.choice(valid)
    return src[:rng.randrange(len(src) + 1)]


def mutated(rng: random.Random, valid: Sequence[bytes]) -> bytes:
    src = bytearray(rng.choice(valid))
    for _ in range(rng.randrange(1, 4)):
        src[rng.randrange(len(src))] = rng.randrange(256)
    return bytes(src)
