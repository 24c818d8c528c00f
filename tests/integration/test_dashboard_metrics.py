"""Every metric the Grafana dashboards query is exported by a real service: checked against the
live `/metrics` pages of the session's stack and of a model server that has scored traffic."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bottega.stack.runner import LocalStack
from bottega.stack.settings import StackSettings
from tests.docker_mode import PROMETHEUS_SERIES, dashboard_metric_names
from tests.integration.conftest import wait_for
from tests.integration.serving_stack import Served

# What each Prometheus metric type puts on a page, after its family name.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}
TRANSACTION = {
    "merchant_id": "m-1",
    "amount": 12.5,
    "currency": "EUR",
    "merchant_category": "grocery",
    "country": "FR",
    "card_country": "FR",
}


def exported_names(url: str) -> set[str]:
    """The series names a `/metrics` page exports, those of families with no sample yet too."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def test_every_metric_the_dashboards_query_is_exported_live(
    stack: LocalStack, stack_settings: StackSettings, served: Served
) -> None:
    with served.client() as client:
        for i in range(5):
            response = client.post("/predict", json={**TRANSACTION, "card_id": f"c-live-{i}"})
            assert response.status_code == 200, response.text
        assert client.post("/predict", json={"card_id": None}).status_code == 422
    pages = {
        "serving": served.url,
        "ingest": stack_settings.ingest.url,
        "monitor": stack_settings.monitor.url,
        "trainer": stack_settings.trainer.url,
        "mlflow": stack_settings.mlflow.url,
        "prometheus": stack_settings.prometheus.url,
        "alertmanager": stack_settings.alertmanager.url,
    }
    exported: dict[str, set[str]] = {}
    for service, url in pages.items():
        exported[service] = exported_names(url)
    every = set().union(*exported.values())
    wanted = dashboard_metric_names()
    missing = {name: sorted(boards) for name, boards in wanted.items() if name not in every}
    assert set(missing) <= PROMETHEUS_SERIES, f"queried but exported by no service: {missing}"
    # The serving dashboard reads latency by stage: the server reports all three.
    serving_page = httpx.get(f"{served.url}/metrics", timeout=10).text
    for stage in ("features", "model", "total"):
        assert f'stage="{stage}"' in serving_page


def test_prometheus_writes_the_series_the_dashboards_read_from_it(
    stack: LocalStack, stack_settings: StackSettings
) -> None:
    prometheus = stack_settings.prometheus.url

    def up_series() -> list[object]:
        body = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up"}, timeout=10).json()
        return list(body["data"]["result"])

    assert wait_for(up_series, timeout_s=60, what="Prometheus's up series")
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    retrain = [
        r["name"] for g in rules for r in g["rules"] if r.get("labels", {}).get("retrain") == "true"
    ]
    # ALERTS{retrain="true"} on the drift dashboard matches these rules' alerts.
    assert {"FeatureDriftDetected", "PredictionDriftDetected", "ModelQualityDegraded"} <= set(
        retrain
    )
