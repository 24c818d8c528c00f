"""The fraud use case's features.

- :mod:`.definitions`: the Feast declarations (imports Feast);
- :mod:`.request`: the request-time function that serving and training share (light: the
  simulator and the model server import it without pulling in Feast).
"""

from bottega.usecases.fraud.features.request import (
    CARD_DEFAULTS,
    CATEGORICAL_FEATURES,
    MERCHANT_DEFAULTS,
    MODEL_FEATURES,
    NUMERIC_FEATURES,
    request_features,
)

__all__ = [
    "CARD_DEFAULTS",
    "CATEGORICAL_FEATURES",
    "MERCHANT_DEFAULTS",
    "MODEL_FEATURES",
    "NUMERIC_FEATURES",
    "request_features",
]
