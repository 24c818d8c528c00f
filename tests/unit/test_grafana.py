"""Grafana, as provisioned in Docker mode: dashboards that the pinned Grafana loads, on the
provisioned datasource, covering what the issue asks each one to show."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.docker_mode import ROOT, compose, dashboards, metric_names, queries

# The newest dashboard schema each pinned Grafana writes; an older schema is migrated on load,
# a newer one is not understood. Pinning a new Grafana means adding its line here.
NEWEST_SCHEMA = {"11.4.0": 40}
OLDEST_SCHEMA = 36  # datasources referenced by {type, uid}
CORE_PANELS = {"timeseries", "stat", "gauge", "state-timeline", "table", "text", "bargauge"}


def grafana_version() -> str:
    image = compose()["services"]["grafana"]["image"]  # in its profile, not started by default
    return image.rpartition(":")[2]


def datasource_uid() -> str:
    path = ROOT / "monitoring/grafana/provisioning/datasources/prometheus.yml"
    (datasource,) = yaml.safe_load(path.read_text())["datasources"]
    assert datasource["url"] == "http://prometheus:9090"  # the compose service
    return str(datasource["uid"])


def test_every_dashboard_fits_the_pinned_grafana() -> None:
    newest = NEWEST_SCHEMA[grafana_version()]
    every = dashboards()
    assert set(every) == {"serving", "drift", "quality", "pipeline"}
    assert len({d["uid"] for d in every.values()}) == len(every)
    uid = datasource_uid()
    for name, dashboard in every.items():
        assert OLDEST_SCHEMA <= dashboard["schemaVersion"] <= newest, name
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        for panel in dashboard["panels"]:
            where = f"{name}/{panel['title']}"
            assert panel["type"] in CORE_PANELS, where
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, where
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, where
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(refs) == len(set(refs)), where
            assert all(
                t["expr"].strip() and t["datasource"]["uid"] == uid for t in panel["targets"]
            )
        for annotation in dashboard["annotations"]["list"]:
            assert annotation.get("builtIn") == 1 or annotation["datasource"]["uid"] == uid


def queried(name: str) -> str:
    return "\n".join(queries(dashboards()[name]))


def test_serving_shows_rate_latency_by_stage_errors_and_model_version() -> None:
    text = queried("serving")
    assert "rate(bottega_predictions_total" in text
    for quantile in ("0.5", "0.99"):
        assert re.search(
            rf"histogram_quantile\({quantile}, sum by \(stage, le\) "
            r"\(rate\(bottega_prediction_latency_seconds_bucket",
            text,
        )
    assert "bottega_serving_rejected_total" in text and 'http_response_code=~"5.."' in text
    assert "max by (version, alias) (bottega_model_info)" in text


def test_drift_shows_share_per_feature_score_and_prediction_drift_with_retraining() -> None:
    text = queried("drift")
    for metric in ("bottega_drift_share", "bottega_feature_drift_score"):
        assert metric in text
    assert "bottega_prediction_drift_score" in text
    annotations = {a["name"] for a in dashboards()["drift"]["annotations"]["list"]}
    assert {"Retraining runs", "Promotions"} <= annotations


def test_quality_shows_pr_auc_precision_recall_label_coverage_and_delay() -> None:
    text = queried("quality")
    for metric in ("pr_auc", "precision|recall", "label_coverage", "label_delay_seconds"):
        assert f'bottega_online_metric{{metric=~"{metric}"}}' in text or (
            f'bottega_online_metric{{metric="{metric}"}}' in text
        )


def test_pipeline_shows_ingest_rate_lag_dead_letters_and_runs_as_annotations() -> None:
    text = queried("pipeline")
    assert "rate(bottega_ingest_events_total" in text
    assert "bottega_ingest_consumer_lag_messages" in text
    assert 'bottega_bus_messages_total{outcome="dead_lettered"}' in text
    exprs = {
        a["name"]: a["expr"] for a in dashboards()["pipeline"]["annotations"]["list"] if "expr" in a
    }
    assert "bottega_trainer_runs_total" in exprs["Retraining runs"]
    assert "bottega_trainer_promotions_total" in exprs["Promotions"]


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le) (rate(a_bucket{x="b_c"}[5m])) / on(job) b_total', {"a_bucket", "b_total"}),
        ("histogram_quantile(0.99, x) > 0.25 and y offset 5m", {"x", "y"}),
        ('ALERTS{alertstate="firing"}', {"ALERTS"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
