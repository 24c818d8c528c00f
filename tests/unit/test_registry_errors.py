"""Which MLflow errors mean "no such version or alias", and which mean the registry failed."""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)

from bottega.registry import absent, registry_failure


def test_only_a_missing_thing_or_a_bad_version_counts_as_absent() -> None:
    assert absent(MlflowException("no such alias", error_code=RESOURCE_DOES_NOT_EXIST))
    assert absent(MlflowException("version 'abc'", error_code=INVALID_PARAMETER_VALUE))
    # The server down or failing is not "there is no champion".
    down = "API request to endpoint /api/2.0/mlflow/x failed with exception Max retries exceeded"
    assert not absent(MlflowException(down, error_code=INTERNAL_ERROR))
    assert not absent(MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE))
    assert not absent(ValueError("not MLflow's"))


def test_a_registry_failure_is_one_line() -> None:
    exc = MlflowException("API request failed\nTraceback (most recent call last):\n  ...")
    assert registry_failure(exc) == "MLflow failed: API request failed"
