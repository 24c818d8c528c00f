"""The concept: the true probability that a transaction is fraud, given what a model can see.

The probability is a logistic function of risk *terms*:

    p = P_MAX * sigmoid(INTERCEPT + intercept_shift + sum(term(x, txn) for active terms))

where ``x`` is :func:`~bottega.usecases.fraud.features.request.request_features` computed from
the card's aggregates as they stood before the transaction, with no merchant row, and ``txn`` is
the transaction itself (its merchant id and time are observable too). Nothing else enters: not
the generator that made the transaction, not the card holder's hidden profile. So ``p`` is the
Bayes-optimal score, and its PR-AUC is the ceiling for any model.

Each attack generator makes some terms fire, but legitimate traffic fires them too (travel, a
second phone, a big purchase, a quick coffee after lunch), and the labels are drawn, not
assigned: the task stays hard. ``P_MAX`` keeps every probability below 0.9 for the same reason.

Concept drift is a term that switches on: a scenario phase lists its active terms. Label shift
is ``intercept_shift``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bottega.events import Transaction

# Tuned so that baseline traffic, with the default attack rate, has a label rate near 0.5%.
INTERCEPT = -6.5
P_MAX = 0.9

_LOG_3 = math.log(3.0)
# log1p of the seconds since the card's previous transaction: ten minutes.
_LOG_TEN_MINUTES = math.log1p(600.0)
_LOG_AN_HOUR = math.log1p(3600.0)

# request_features' output: numbers are floats (flags are 0.0 or 1.0), categories strings.
Features = Mapping[str, Any]
TermFunction = Callable[[Features, Transaction, bool], float]


@dataclass(frozen=True)
class Term:
    """One additive contribution to the fraud logit."""

    name: str
    description: str
    logit: TermFunction  # (x, txn, merchant is compromised) -> logit contribution


def _spike(x: Features) -> float:
    # How far above three times the card's 7-day mean, in log units, capped.
    ratio = x["amount_to_mean_7d"]
    return min(math.log(ratio) - _LOG_3, 2.5) if ratio > 3.0 else 0.0


def _amount_spike(x: Features, txn: Transaction, compromised: bool) -> float:
    return 0.8 * _spike(x)


def _foreign_country(x: Features, txn: Transaction, compromised: bool) -> float:
    return 0.7 if x["country_mismatch"] else 0.0


def _new_device(x: Features, txn: Transaction, compromised: bool) -> float:
    return 0.5 if x["device_changed"] else 0.0


def _night(x: Features, txn: Transaction, compromised: bool) -> float:
    return 0.5 if x["hour_of_day"] < 6 else 0.0


def _velocity(x: Features, txn: Transaction, compromised: bool) -> float:
    # The card row's counts are as of its last transaction: they speak of now only when that
    # transaction was recent.
    n: float = x["txn_count_1h"]
    if n < 3 or x["log_seconds_since_last"] > _LOG_AN_HOUR:
        return 0.0
    return 0.35 * (min(n, 8.0) - 2.0)


def _card_testing(x: Features, txn: Transaction, compromised: bool) -> float:
    if txn.amount >= 5.0 or x["log_seconds_since_last"] > _LOG_TEN_MINUTES:
        return 0.0
    recent: float = x["txn_count_1h"]
    return 3.5 + 0.5 * min(recent, 6.0)


def _account_takeover(x: Features, txn: Transaction, compromised: bool) -> float:
    if not (x["is_online"] and x["country_mismatch"]):
        return 0.0
    return 1.5 + 1.8 * _spike(x) + (1.2 if x["device_changed"] else 0.0)


def _compromised_merchant(x: Features, txn: Transaction, compromised: bool) -> float:
    return 4.0 if compromised else 0.0


def _fraud_ring(x: Features, txn: Transaction, compromised: bool) -> float:
    in_region = (
        x["is_online"]
        and x["merchant_category"] == "electronics"
        and 150.0 <= txn.amount <= 800.0
        and x["hour_of_day"] < 6
        and x["txn_count_24h"] >= 1
    )
    return 6.5 if in_region else 0.0


TERMS: Mapping[str, Term] = {
    term.name: term
    for term in (
        Term("amount_spike", "amount far above the card's 7-day mean", _amount_spike),
        Term("foreign_country", "used outside the issuing country", _foreign_country),
        Term("new_device", "a device other than the card's last one", _new_device),
        Term("night", "between midnight and 6:00 UTC", _night),
        Term(
            "velocity", "three or more transactions within the hour, the last one recent", _velocity
        ),
        Term(
            "card_testing",
            "a small amount (< 5) minutes after the previous transaction",
            _card_testing,
        ),
        Term(
            "account_takeover",
            "online and abroad; stronger with an amount spike and a new device",
            _account_takeover,
        ),
        Term(
            "compromised_merchant", "at a merchant whose data was breached", _compromised_merchant
        ),
        Term(
            "fraud_ring",
            "online electronics of 150-800 at night on a recently active card",
            _fraud_ring,
        ),
    )
}
# Every term except the one that concept-drift scenarios switch on.
BASELINE_TERMS: tuple[str, ...] = tuple(name for name in TERMS if name != "fraud_ring")


class Concept:
    """The fraud probability as a function of observables, for one set of active terms."""

    def __init__(
        self,
        terms: Sequence[str],
        *,
        intercept_shift: float = 0.0,
        compromised: frozenset[str] = frozenset(),
    ) -> None:
        unknown = [name for name in terms if name not in TERMS]
        if unknown:
            raise ValueError(f"unknown concept terms {unknown}; allowed: {', '.join(TERMS)}")
        self.terms: tuple[str, ...] = tuple(terms)
        self.intercept = INTERCEPT + intercept_shift
        self.compromised = compromised
        self._functions = tuple(TERMS[name].logit for name in self.terms)

    def logit(self, x: Features, txn: Transaction) -> float:
        """The log-odds before the ceiling: the intercept plus every active term."""
        compromised = txn.merchant_id in self.compromised
        z = self.intercept
        for term in self._functions:
            z += term(x, txn, compromised)
        return z

    def probability(self, x: Features, txn: Transaction) -> float:
        """The probability that ``txn`` is fraud: ``P_MAX * sigmoid(logit)``."""
        z = self.logit(x, txn)
        # Both branches avoid overflow in exp for large |z|.
        if z >= 0:
            return P_MAX / (1.0 + math.exp(-z))
        e = math.exp(z)
        return P_MAX * e / (1.0 + e)

    def contributions(self, x: Features, txn: Transaction) -> dict[str, float]:
        """Each active term's share of the logit, by name: why this transaction is risky."""
        compromised = txn.merchant_id in self.compromised
        return {name: TERMS[name].logit(x, txn, compromised) for name in self.terms}
