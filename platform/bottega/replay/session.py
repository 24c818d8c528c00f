"""Setting a replay up against the running stack: where the simulated clock starts, the cards'
past, the bus and the model server.

The world carries on from what the platform has already seen:

- **the clock.** A scenario's phases are laid out by time of day (a fraud ring works at night),
  so a replay starts at the scenario's own start moved forward by whole days, to the first such
  time after the newest transaction in the feature store. On an empty store it starts at the
  scenario's start.
- **the gap.** The hours between the store's newest transaction and that start are not left
  silent: the scenario's first phase fills them (the *lead-in*), published on ``transactions``
  with their labels but neither paced nor scored. Silence would be a drift of its own: every
  card's 1-hour and 24-hour counts would start low, and the monitor would say so.
- **the cards.** Their aggregates are rebuilt from the store's raw log (read-only), so that a
  card's first simulated transaction sees the same history that the model server reads online,
  and the oracle's probabilities stay consistent with what the model sees.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bottega.settings import BottegaSettings
from bottega.usecases.fraud.aggregates import CardAggregator
from bottega.usecases.fraud.scenario import Scenario, aligned_start, load_scenario
from bottega.usecases.fraud.simulator import Simulator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What a replay will play."""

    scenario: Scenario
    simulator: Simulator
    start: datetime
    end: datetime
    cards_with_history: int
    lead_in: timedelta  # from the store's newest transaction to ``start``, played unscored


def plan(
    settings: BottegaSettings,
    scenario: Scenario | Path,
    *,
    start: datetime | None = None,
    duration: timedelta | None = None,
) -> Plan:
    """The simulator for ``scenario`` (or the file it is in), continuing the feature store's
    history."""
    from bottega.usecases.fraud.store import FraudFeatureStore

    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    fs = FraudFeatureStore(settings)
    newest = fs.newest_transaction_time()
    begin = start or aligned_start(scenario.start, newest)
    cards, replayed = fs.rebuild_cards()
    log.info(
        "replay plan",
        extra={
            "scenario": scenario.name,
            "start": begin.isoformat(),
            "store_newest": newest.isoformat() if newest else None,
            "cards": len(cards.cards),
            "history_rows": replayed,
        },
    )
    until = begin + duration if duration is not None else None
    lead_in = begin - newest if newest is not None and begin > newest else timedelta(0)
    simulator = Simulator(
        scenario, start=begin, until=until, history=lead_in, cards=lambda: _copy(cards)
    )
    return Plan(scenario, simulator, begin, simulator.end, len(cards.cards), lead_in)


def _copy(cards: CardAggregator) -> CardAggregator:
    # Each run of the simulator starts from the same past; a run mutates its aggregator.
    return copy.deepcopy(cards)
