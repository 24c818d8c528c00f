"""The simulated world: merchant categories, countries, card holders and merchants.

A :class:`Population` is built from a scenario's seed and sizes alone, so every scenario with the
same seed shares the same cards and merchants, and the ids (``card-00042``, ``m-0007``) are the
feature store's entity keys.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from bottega.usecases.fraud.rng import Rng, cumulative


@dataclass(frozen=True)
class Category:
    """A merchant category: how popular it is and what a purchase there looks like."""

    share: float  # share of legitimate purchases before card preferences
    median_amount: float  # EUR
    sigma: float  # log-normal spread of amounts
    online_share: float  # share of purchases made online


CATEGORIES: Mapping[str, Category] = {
    "grocery": Category(0.22, 35.0, 0.6, 0.08),
    "restaurant": Category(0.15, 28.0, 0.5, 0.12),
    "fuel": Category(0.08, 55.0, 0.35, 0.0),
    "apparel": Category(0.08, 60.0, 0.7, 0.35),
    "electronics": Category(0.06, 120.0, 0.9, 0.5),
    "travel": Category(0.04, 250.0, 0.8, 0.7),
    "entertainment": Category(0.08, 25.0, 0.6, 0.3),
    "digital_goods": Category(0.12, 12.0, 0.8, 0.95),
    "health": Category(0.07, 45.0, 0.6, 0.08),
    "home": Category(0.10, 70.0, 0.8, 0.3),
}
CATEGORY_NAMES: tuple[str, ...] = tuple(CATEGORIES)

# Where cards are issued (and merchants sit), by share: a European issuer with some reach.
COUNTRIES: Mapping[str, float] = {
    "FR": 0.24,
    "DE": 0.20,
    "ES": 0.12,
    "IT": 0.12,
    "GB": 0.08,
    "NL": 0.07,
    "BE": 0.05,
    "PT": 0.04,
    "US": 0.05,
    "PL": 0.03,
}
COUNTRY_NAMES: tuple[str, ...] = tuple(COUNTRIES)

# One merchant in a hundred is compromised, at least one.
COMPROMISED_SHARE = 0.01

_K = TypeVar("_K")


@dataclass(frozen=True)
class Card:
    """A card and the habits of its holder."""

    card_id: str
    country: str  # issuing country, the transaction's card_country
    amount_scale: float  # this holder spends more or less than the typical one
    activity: float  # relative number of purchases per hour
    devices: tuple[str, ...]  # the one or two devices used online
    category_weights: tuple[float, ...]  # preference for each category, CATEGORY_NAMES order


@dataclass(frozen=True)
class Merchant:
    """A merchant: where it sits, what it sells, and how busy it is."""

    merchant_id: str
    category: str
    country: str
    amount_scale: float  # a pricier or cheaper shop than its category's median
    popularity: float


@dataclass(frozen=True)
class _Shelf:
    """Merchants of one (country, category) cell, with their cumulative popularity."""

    merchants: tuple[Merchant, ...]
    cumulative: tuple[float, ...]


@dataclass(frozen=True)
class Population:
    """The cards and merchants of one scenario, and which merchants are compromised."""

    cards: tuple[Card, ...]
    merchants: tuple[Merchant, ...]
    compromised: frozenset[str]
    _cells: dict[tuple[str, str], _Shelf] = field(repr=False)
    _by_category: dict[str, _Shelf] = field(repr=False)

    def merchant(self, country: str, category: str, u: float) -> Merchant:
        """The merchant of ``category`` in ``country`` at quantile ``u`` of popularity.

        A cell with no merchant (small populations) falls back to the category anywhere.
        """
        shelf = self._cells.get((country, category)) or self._by_category[category]
        return shelf.merchants[bisect.bisect_right(shelf.cumulative, u * shelf.cumulative[-1])]

    def any_merchant(self, category: str, u: float) -> Merchant:
        """A merchant of ``category`` anywhere, uniformly: a fraudster has no favourite shop."""
        shelf = self._by_category[category]
        return shelf.merchants[min(int(u * len(shelf.merchants)), len(shelf.merchants) - 1)]


def build_population(seed: int, *, cards: int, merchants: int) -> Population:
    """Cards and merchants for ``seed``; the same arguments always give the same world."""
    if merchants < len(CATEGORIES):
        raise ValueError(f"need at least {len(CATEGORIES)} merchants, one per category")
    rng = Rng(seed, "population")
    country_sums = cumulative(list(COUNTRIES.values()))
    category_shares = [c.share for c in CATEGORIES.values()]

    card_list = []
    for i in range(cards):
        n_devices = 2 if rng.random() < 0.4 else 1
        card_list.append(
            Card(
                card_id=f"card-{i:05d}",
                country=COUNTRY_NAMES[rng.pick(country_sums)],
                amount_scale=rng.lognormal(1.0, 0.35),
                activity=rng.lognormal(1.0, 0.6),
                devices=tuple(rng.hex_id("dev-") for _ in range(n_devices)),
                category_weights=tuple(s * rng.lognormal(1.0, 0.7) for s in category_shares),
            )
        )

    # The first merchants cover every (country, category) cell, the biggest countries first,
    # so that a purchase at home always finds a shop; the rest follow the shares.
    cells = [(country, category) for country in COUNTRY_NAMES for category in CATEGORY_NAMES]
    cell_sums = cumulative([COUNTRIES[c] * CATEGORIES[k].share for c, k in cells])
    merchant_list = []
    for i in range(merchants):
        country, category = cells[i] if i < len(cells) else cells[rng.pick(cell_sums)]
        merchant_list.append(
            Merchant(
                merchant_id=f"m-{i:04d}",
                category=category,
                country=country,
                amount_scale=rng.lognormal(1.0, 0.25),
                popularity=rng.lognormal(1.0, 1.0),
            )
        )

    # Compromised merchants are small shops: a breach there goes unnoticed for longer, and
    # their legitimate traffic is a small share of the whole.
    quiet = sorted(merchant_list, key=lambda m: (m.popularity, m.merchant_id))
    quiet = quiet[: max(1, len(quiet) // 4)]
    n_compromised = max(1, round(merchants * COMPROMISED_SHARE))
    compromised: set[str] = set()
    while len(compromised) < min(n_compromised, len(quiet)):
        compromised.add(quiet[int(rng.random() * len(quiet))].merchant_id)

    return Population(
        cards=tuple(card_list),
        merchants=tuple(merchant_list),
        compromised=frozenset(compromised),
        _cells=_shelves(merchant_list, lambda m: (m.country, m.category)),
        _by_category=_shelves(merchant_list, lambda m: m.category),
    )


def _shelves(merchants: list[Merchant], key: Callable[[Merchant], _K]) -> dict[_K, _Shelf]:
    groups: dict[_K, list[Merchant]] = {}
    for merchant in merchants:
        groups.setdefault(key(merchant), []).append(merchant)
    return {
        k: _Shelf(tuple(ms), tuple(cumulative([m.popularity for m in ms])))
        for k, ms in groups.items()
    }
