"""A challenger that is slow and then raises on every call: the shadow test's saboteur."""

from __future__ import annotations

import time

from mlflow.pyfunc import PythonModel

DELAY_S = 0.3


class ExplodingModel(PythonModel):
    """Sleeps, then raises: were it on the request path, every answer would be late or fail."""

    # No type hints: MLflow would read them as an input schema.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        time.sleep(DELAY_S)
        raise RuntimeError("the shadow challenger exploded")
