"""Legitimate card traffic: when people pay, with which card, where, how and how much.

Arrivals are a non-homogeneous Poisson process whose rate follows the hour of the day and the day
of the week (sampled by thinning, in :mod:`bottega.usecases.fraud.simulator`). Each arrival picks
a card by its holder's activity, a category by the holder's preferences, a channel, a merchant
and a log-normal amount. Card holders sometimes travel: for a few days their card-present
purchases happen abroad, which is legitimate and still looks like a country mismatch.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from bottega.usecases.fraud.population import (
    CATEGORIES,
    CATEGORY_NAMES,
    COUNTRIES,
    COUNTRY_NAMES,
    Card,
    Merchant,
    Population,
)
from bottega.usecases.fraud.rng import Rng, cumulative

if TYPE_CHECKING:
    # Only a type: scenario imports the pattern registry, which imports this module.
    from bottega.usecases.fraud.scenario import Phase

# Relative spending by hour of the day (UTC), Monday to Sunday by day: lunch and evening peaks,
# a quiet night.
HOUR_WEIGHTS: tuple[float, ...] = (
    0.25, 0.15, 0.10, 0.08, 0.08, 0.15, 0.35, 0.65, 0.95, 1.10, 1.20, 1.35,
    1.60, 1.50, 1.25, 1.20, 1.30, 1.50, 1.65, 1.60, 1.40, 1.10, 0.75, 0.45,
)  # fmt: skip
WEEKDAY_WEIGHTS: tuple[float, ...] = (0.92, 0.94, 0.96, 1.00, 1.12, 1.15, 0.91)

# The rate multiplier for each hour of the week, Monday 00:00 first, averaging 1.
_WEEK = [h * d for d in WEEKDAY_WEIGHTS for h in HOUR_WEIGHTS]
WEEK_RHYTHM: tuple[float, ...] = tuple(w * len(_WEEK) / sum(_WEEK) for w in _WEEK)
HOURS_PER_WEEK = 168
# 1970-01-01, epoch hour 0, was a Thursday: 72 hours into its week.
EPOCH_HOUR_OF_WEEK = 72

# A purchase starts a trip with this probability; trips last one to six days.
TRIP_PROBABILITY = 0.002
TRIP_DAYS = (1.0, 6.0)
# Online purchases mostly stay at home; the rest go to foreign shops, legitimately.
ONLINE_DOMESTIC = 0.9
# A holder with two devices uses the first one most of the time.
FIRST_DEVICE = 0.75
MIN_AMOUNT = 0.5


def hour_of_week(t: float) -> int:
    """The hour of the week (Monday 00:00 UTC is 0) of epoch second ``t``."""
    return (int(t // 3600.0) + EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK


class Draft(NamedTuple):
    """A transaction before it gets its id and its label."""

    time: float  # epoch seconds
    card: Card
    merchant: Merchant
    amount: float
    country: str
    channel: str
    device_id: str | None
    pattern: str


@dataclass
class PhaseTraffic:
    """One phase's legitimate traffic, precomputed from its shifts."""

    phase: Phase
    population: Population
    rate_per_s: float  # legitimate transactions per second, on average
    # The rate for each hour of the week, and its peak: the envelope that thinning samples from.
    week_rates: tuple[float, ...] = field(init=False)
    peak_rate: float = field(init=False)
    card_sums: list[float] = field(init=False)
    category_factor: tuple[float, ...] = field(init=False)
    country_factor: dict[str, float] = field(init=False)
    online_share: tuple[float, ...] = field(init=False)  # by category index
    amount_scale: float = field(init=False)
    # Foreign destinations for a holder from each country, with their cumulative weights.
    abroad: dict[str, tuple[tuple[str, ...], list[float]]] = field(init=False)
    # Each card's category preferences under this phase's shifts, cumulated; filled lazily.
    card_categories: dict[int, list[float]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        shifts = self.phase.shifts
        self.category_factor = tuple(shifts.category_weights.get(k, 1.0) for k in CATEGORY_NAMES)
        self.country_factor = {c: shifts.country_weights.get(c, 1.0) for c in COUNTRY_NAMES}
        self.card_sums = cumulative(
            [card.activity * self.country_factor[card.country] for card in self.population.cards]
        )
        # Country weights can silence every card of a small population: then nobody pays.
        rate = self.rate_per_s if self.card_sums[-1] > 0 else 0.0
        self.week_rates = tuple(rate * w for w in WEEK_RHYTHM)
        self.peak_rate = max(self.week_rates)
        share = shifts.online_share
        self.online_share = tuple(
            CATEGORIES[k].online_share if share is None else share for k in CATEGORY_NAMES
        )
        self.amount_scale = shifts.amount_scale
        self.abroad = {}
        for home in COUNTRY_NAMES:
            names = tuple(c for c in COUNTRY_NAMES if c != home)
            weights = [COUNTRIES[c] * self.country_factor[c] for c in names]
            self.abroad[home] = (names, cumulative(weights))

    def category_sums(self, index: int, card: Card) -> list[float]:
        """The card's category preferences under this phase's category shifts, cumulated."""
        sums = self.card_categories.get(index)
        if sums is None:
            factors = zip(card.category_weights, self.category_factor, strict=True)
            sums = self.card_categories[index] = cumulative([w * f for w, f in factors])
        return sums


_PROFILES = tuple(CATEGORIES[k] for k in CATEGORY_NAMES)


class Traffic:
    """Draws legitimate purchases; remembers who is travelling where."""

    def __init__(self, population: Population, rng: Rng) -> None:
        self.population = population
        self.rng = rng
        self._trips: dict[int, tuple[str, float]] = {}  # card index -> (country, until)

    def draft(self, t: float, phase: PhaseTraffic) -> Draft:
        """One legitimate purchase at epoch second ``t``."""
        rng = self.rng
        random = rng.random
        index = bisect.bisect_right(phase.card_sums, random() * phase.card_sums[-1])
        card = self.population.cards[index]
        # Most purchases happen at home by someone not travelling: the common case stays inline.
        location = card.country
        if index in self._trips or random() < TRIP_PROBABILITY:
            location = self._travel(index, card, t, phase)
        sums = phase.card_categories.get(index) or phase.category_sums(index, card)
        k = bisect.bisect_right(sums, random() * sums[-1])
        category = CATEGORY_NAMES[k]
        profile = _PROFILES[k]
        online = random() < phase.online_share[k]
        if online:
            channel = "online"
            where = card.country if random() < ONLINE_DOMESTIC else self._abroad(card, phase)
            devices = card.devices
            device: str | None = (
                devices[0] if len(devices) == 1 or random() < FIRST_DEVICE else devices[1]
            )
        else:
            channel = "card_present"
            where = location
            device = None
        merchant = self.population.merchant(where, category, random())
        amount = round(
            profile.median_amount
            * merchant.amount_scale
            * card.amount_scale
            * phase.amount_scale
            * math.exp(profile.sigma * rng.normal()),
            2,
        )
        return Draft(
            t,
            card,
            merchant,
            amount if amount > MIN_AMOUNT else MIN_AMOUNT,
            merchant.country if online else where,
            channel,
            device,
            "normal",
        )

    def _travel(self, index: int, card: Card, t: float, phase: PhaseTraffic) -> str:
        # Where the holder of a card that is, or is about to start, travelling pays in person.
        trip = self._trips.get(index)
        if trip is not None:
            if t < trip[1]:
                return trip[0]
            del self._trips[index]
            if self.rng.random() >= TRIP_PROBABILITY:
                return card.country
        destination = self._abroad(card, phase)
        if destination != card.country:
            days = self.rng.between(*TRIP_DAYS)
            self._trips[index] = (destination, t + days * 86400.0)
        return destination

    def _abroad(self, card: Card, phase: PhaseTraffic) -> str:
        names, sums = phase.abroad[card.country]
        if sums[-1] <= 0:
            return card.country  # every foreign country is weighted out
        return names[self.rng.pick(sums)]
