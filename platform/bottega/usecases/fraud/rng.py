"""Seeded random streams for the simulator.

Every draw is built on :meth:`random.Random.random` and :meth:`random.Random.getrandbits` alone.
CPython promises that those two reproduce the same sequence for the same seed across versions;
it makes no such promise for ``gauss``, ``choices`` or ``lognormvariate``, so the distributions
here are derived by hand. The same seed therefore gives the same events, byte for byte.

Each concern (the population, legitimate traffic, attacks, event ids, labels) draws from its own
stream, so that changing, say, the label delay of a scenario leaves its transactions unchanged.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from uuid import UUID

_TWO_PI = 2.0 * math.pi


class Rng(random.Random):
    """One named, seeded stream of random numbers."""

    def __init__(self, seed: int, stream: str) -> None:
        # A string seed goes through SHA-512 (seeding version 2): stable, and streams that share
        # a scenario seed are still independent.
        super().__init__(f"bottega:{seed}:{stream}")

    def normal(self) -> float:
        """A standard normal draw (Box-Muller)."""
        u = self.random()
        return math.sqrt(-2.0 * math.log(1.0 - u)) * math.cos(_TWO_PI * self.random())

    def lognormal(self, median: float, sigma: float) -> float:
        """A log-normal draw with the given median and log-scale sigma."""
        return median * math.exp(sigma * self.normal())

    def exponential(self, rate: float) -> float:
        """The waiting time to the next event of a Poisson process with ``rate`` per unit."""
        return -math.log(1.0 - self.random()) / rate

    def between(self, low: float, high: float) -> float:
        """A uniform draw in ``[low, high)``."""
        return low + (high - low) * self.random()

    def integer(self, low: int, high: int) -> int:
        """A uniform integer in ``[low, high]``, both ends included."""
        return low + int(self.random() * (high - low + 1))

    def pick(self, cumulative: Sequence[float]) -> int:
        """An index drawn in proportion to the weights whose running sums are ``cumulative``."""
        return bisect.bisect_right(cumulative, self.random() * cumulative[-1])

    def uuid4(self) -> UUID:
        """A version-4 UUID from 128 seeded bits."""
        return UUID(int=self.getrandbits(128), version=4)

    def hex_id(self, prefix: str, digits: int = 12) -> str:
        """An opaque id such as ``dev-3fa85f6457b2``."""
        return f"{prefix}{self.getrandbits(4 * digits):0{digits}x}"


def cumulative(weights: Sequence[float]) -> list[float]:
    """Running sums of ``weights``, the form :meth:`Rng.pick` takes."""
    total = 0.0
    sums = []
    for weight in weights:
        total += weight
        sums.append(total)
    return sums
