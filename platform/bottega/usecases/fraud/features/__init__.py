"""The fraud use case's features: Feast declarations and the request-time function."""

from bottega.usecases.fraud.features.definitions import (
    CARD_PUSH_SOURCE,
    CARD_VIEW,
    FEATURE_SERVICE,
    FEATURE_SERVICE_VERSION,
    MERCHANT_VIEW,
    FraudFeatureRepo,
    fraud_feature_repo,
)
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
    "CARD_PUSH_SOURCE",
    "CARD_VIEW",
    "CATEGORICAL_FEATURES",
    "FEATURE_SERVICE",
    "FEATURE_SERVICE_VERSION",
    "MERCHANT_DEFAULTS",
    "MERCHANT_VIEW",
    "MODEL_FEATURES",
    "NUMERIC_FEATURES",
    "FraudFeatureRepo",
    "fraud_feature_repo",
    "request_features",
]
