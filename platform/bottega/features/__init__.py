"""The feature store: Feast, configured from settings, plus Bottega's offline tables.

``training_set(start, end)`` builds a point-in-time-correct training frame for a use case.
"""

from bottega.features.training import training_set

__all__ = ["training_set"]
