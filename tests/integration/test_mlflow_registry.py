"""A torch model through the running MLflow server: log, register, alias, load by alias."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow.models import infer_signature

from bottega.stack.runner import LocalStack
from bottega.stack.settings import StackSettings


class TinyScorer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(x))


@pytest.fixture()
def tracking_uri(stack: LocalStack, stack_settings: StackSettings) -> Iterator[str]:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(stack_settings.mlflow_tracking_uri)
    try:
        yield stack_settings.mlflow_tracking_uri
    finally:
        mlflow.set_tracking_uri(previous)


def test_log_register_alias_and_load_back(
    tracking_uri: str, unique: Callable[[str], str], stack_settings: StackSettings
) -> None:
    torch.manual_seed(0)
    model = TinyScorer().eval()
    name = unique("tiny-scorer")
    # More than one row: a one-row example would freeze the exported batch size.
    example = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(example)).numpy()

    mlflow.set_experiment(unique("integration"))
    with mlflow.start_run() as run:
        mlflow.log_param("hidden", 0)
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=example,
            signature=infer_signature(example, expected),
            registered_model_name=name,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
    client = MlflowClient(tracking_uri)
    versions = client.search_model_versions(f"name='{name}'")
    assert [v.version for v in versions] == ["1"]
    assert versions[0].run_id == run.info.run_id

    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"

    # Served through the server's artifact proxy, not the local file system.
    artifact_root = client.get_run(run.info.run_id).info.artifact_uri
    assert artifact_root.startswith("mlflow-artifacts:")
    assert info.model_uri

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    batch = example[:3]  # a different batch size from the example's
    got = np.asarray(loaded.predict(batch)).reshape(-1, 1)
    np.testing.assert_allclose(got, expected[:3], rtol=1e-5, atol=1e-6)

    torch_model = mlflow.pytorch.load_model(f"models:/{name}@champion")
    with torch.no_grad():
        again = torch_model(torch.from_numpy(example[:5])).numpy()
    np.testing.assert_allclose(again, expected[:5], rtol=1e-5, atol=1e-6)
    artifacts_dir = stack_settings.home / "mlflow" / "artifacts"
    assert any(artifacts_dir.rglob("MLmodel")), "artifacts live under the state directory"
