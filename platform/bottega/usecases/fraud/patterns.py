"""Attack generators: how fraudsters use cards, one incident at a time.

An incident is a short burst of transactions planned when it starts; the simulator merges them
into the legitimate stream in time order. A generator only decides what the transactions look
like. Whether each one is labelled fraud is decided by the concept
(:mod:`bottega.usecases.fraud.concept`), from what the transactions make observable, never from
which generator made them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bottega.usecases.fraud.population import CATEGORIES, COUNTRY_NAMES, Card, Population
from bottega.usecases.fraud.rng import Rng
from bottega.usecases.fraud.traffic import Draft

# A typical card holder's mean purchase, before their own amount scale: what "large relative to
# the card's mean" is measured against.
TYPICAL_AMOUNT = 70.0
# How many recent legitimate transactions' cards count as "recently active".
RECENT_CARDS = 2048


class AttackContext:
    """What a generator may draw on: the world, its random stream, and recently active cards."""

    def __init__(self, population: Population, rng: Rng) -> None:
        self.population = population
        self.rng = rng
        self.compromised = tuple(
            m for m in population.merchants if m.merchant_id in population.compromised
        )
        self._recent: list[Card] = []
        self._next = 0

    def remember(self, card: Card) -> None:
        """Note that ``card`` was just used legitimately."""
        if len(self._recent) < RECENT_CARDS:
            self._recent.append(card)
        else:
            self._recent[self._next] = card
            self._next = (self._next + 1) % RECENT_CARDS

    def active_card(self) -> Card:
        """A card used legitimately in the recent past: its credentials are live."""
        if not self._recent:
            return self.any_card()
        return self._recent[int(self.rng.random() * len(self._recent))]

    def any_card(self) -> Card:
        """Any card: a number bought in bulk, active or not."""
        cards = self.population.cards
        return cards[int(self.rng.random() * len(cards))]


Generator = Callable[[AttackContext, float], list[Draft]]


@dataclass(frozen=True)
class Pattern:
    """One kind of attack."""

    name: str
    description: str
    generate: Generator  # (context, start time) -> the incident's transactions
    # Transactions per incident on average: turns a share of traffic into an incident rate.
    mean_events: float
    # UTC hours [first, last) when the pattern strikes; None: around the clock.
    hours: tuple[int, int] | None = None


def _card_testing(ctx: AttackContext, t: float) -> list[Draft]:
    # Stolen numbers are checked with small payments at shops the card has never used,
    # from the fraudster's own device, minutes apart.
    rng = ctx.rng
    card = ctx.any_card()
    device = rng.hex_id("dev-")
    drafts = []
    for i in range(rng.integer(3, 8)):
        if i:
            t += rng.between(15.0, 180.0)
        category = "digital_goods" if rng.random() < 0.7 else "entertainment"
        merchant = ctx.population.any_merchant(category, rng.random())
        amount = round(rng.between(0.5, 4.99), 2)
        drafts.append(
            Draft(t, card, merchant, amount, merchant.country, "online", device, "card_testing")
        )
    return drafts


def _account_takeover(ctx: AttackContext, t: float) -> list[Draft]:
    # A live account is taken over from a new device abroad and drained with a few large
    # online purchases within the hour.
    rng = ctx.rng
    card = ctx.active_card()
    device = rng.hex_id("dev-")
    foreign = [c for c in COUNTRY_NAMES if c != card.country]
    country = foreign[int(rng.random() * len(foreign))]
    drafts = []
    for i in range(rng.integer(1, 3)):
        if i:
            t += rng.between(60.0, 1200.0)
        category = ("electronics", "travel", "apparel")[int(rng.random() * 3)]
        merchant = ctx.population.merchant(country, category, rng.random())
        amount = round(TYPICAL_AMOUNT * card.amount_scale * rng.between(4.0, 15.0), 2)
        drafts.append(
            Draft(t, card, merchant, amount, merchant.country, "online", device, "account_takeover")
        )
    return drafts


def _compromised_merchant(ctx: AttackContext, t: float) -> list[Draft]:
    # A breached (or complicit) merchant runs ordinary-looking payments on cards it has seen.
    rng = ctx.rng
    merchant = ctx.compromised[int(rng.random() * len(ctx.compromised))]
    card = ctx.active_card()
    profile = CATEGORIES[merchant.category]
    online = rng.random() < profile.online_share
    amount = (
        profile.median_amount
        * merchant.amount_scale
        * card.amount_scale
        * math.exp(profile.sigma * rng.normal())
    )
    return [
        Draft(
            t,
            card,
            merchant,
            max(round(amount, 2), 0.5),
            merchant.country,
            "online" if online else "card_present",
            card.devices[0] if online else None,
            "compromised_merchant",
        )
    ]


def _fraud_ring(ctx: AttackContext, t: float) -> list[Draft]:
    # A ring with the holders' own credentials and devices (phished, not stolen in bulk) buys
    # resellable electronics at home at night: nothing foreign, nothing new, nothing huge.
    rng = ctx.rng
    card = ctx.active_card()
    drafts = []
    for i in range(rng.integer(1, 2)):
        if i:
            t += rng.between(120.0, 900.0)
        merchant = ctx.population.merchant(card.country, "electronics", rng.random())
        amount = round(rng.between(150.0, 800.0), 2)
        drafts.append(
            Draft(
                t, card, merchant, amount, merchant.country, "online", card.devices[0], "fraud_ring"
            )
        )
    return drafts


PATTERNS: Mapping[str, Pattern] = {
    pattern.name: pattern
    for pattern in (
        Pattern(
            "card_testing",
            "bursts of 3-8 payments under 5 at new merchants, minutes apart",
            _card_testing,
            mean_events=5.5,
        ),
        Pattern(
            "account_takeover",
            "1-3 large online payments from a new device abroad within the hour",
            _account_takeover,
            mean_events=2.0,
        ),
        Pattern(
            "compromised_merchant",
            "extra payments at a few breached merchants",
            _compromised_merchant,
            mean_events=1.0,
        ),
        Pattern(
            "fraud_ring",
            "online electronics of 150-800 at night on recently active cards",
            _fraud_ring,
            mean_events=1.5,
            hours=(0, 6),
        ),
    )
}
