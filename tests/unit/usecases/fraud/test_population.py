"""The simulated world: built from the seed alone, with the ids the feature store keys on."""

from __future__ import annotations

from bottega.usecases.fraud.population import (
    CATEGORY_NAMES,
    COUNTRY_NAMES,
    build_population,
)
from bottega.usecases.fraud.rng import Rng


def test_the_same_seed_builds_the_same_world() -> None:
    assert build_population(3, cards=200, merchants=150) == build_population(
        3, cards=200, merchants=150
    )
    assert build_population(3, cards=200, merchants=150) != build_population(
        4, cards=200, merchants=150
    )


def test_sizes_ids_and_devices() -> None:
    world = build_population(1, cards=300, merchants=120)
    assert [c.card_id for c in world.cards[:2]] == ["card-00000", "card-00001"]
    assert world.merchants[7].merchant_id == "m-0007"
    assert len(world.cards) == 300 and len(world.merchants) == 120
    assert all(1 <= len(c.devices) <= 2 for c in world.cards)
    assert all(d.startswith("dev-") for c in world.cards for d in c.devices)
    assert {c.country for c in world.cards} <= set(COUNTRY_NAMES)


def test_every_country_has_a_shop_of_every_category() -> None:
    world = build_population(1, cards=10, merchants=len(COUNTRY_NAMES) * len(CATEGORY_NAMES))
    for country in COUNTRY_NAMES:
        for category in CATEGORY_NAMES:
            for u in (0.0, 0.5, 0.999):
                merchant = world.merchant(country, category, u)
                assert (merchant.country, merchant.category) == (country, category)


def test_a_small_world_falls_back_to_the_category_anywhere() -> None:
    world = build_population(1, cards=10, merchants=len(CATEGORY_NAMES))
    for category in CATEGORY_NAMES:
        assert world.merchant("PL", category, 0.3).category == category


def test_compromised_merchants_are_a_quiet_few() -> None:
    world = build_population(42, cards=10, merchants=400)
    assert len(world.compromised) == 4
    popularity = sorted(m.popularity for m in world.merchants)
    quiet = popularity[len(popularity) // 4]
    assert all(m.popularity <= quiet for m in world.merchants if m.merchant_id in world.compromised)


def test_streams_with_one_seed_are_independent_and_repeatable() -> None:
    a, b = Rng(5, "traffic"), Rng(5, "labels")
    first = [a.random() for _ in range(5)]
    assert first != [b.random() for _ in range(5)]
    again = Rng(5, "traffic")
    assert [again.random() for _ in range(5)] == first


def test_hand_made_distributions() -> None:
    rng = Rng(9, "test")
    normals = [rng.normal() for _ in range(20_000)]
    mean = sum(normals) / len(normals)
    sd = (sum((x - mean) ** 2 for x in normals) / len(normals)) ** 0.5
    assert abs(mean) < 0.03 and abs(sd - 1) < 0.03
    draws = sorted(rng.lognormal(40.0, 0.5) for _ in range(20_000))
    assert abs(draws[len(draws) // 2] / 40.0 - 1) < 0.03
    picks = [rng.pick([1.0, 1.0, 4.0]) for _ in range(20_000)]
    assert abs(picks.count(2) / len(picks) - 0.75) < 0.02
    assert all(3 <= rng.integer(3, 8) <= 8 for _ in range(1000))
