"""Which retraining window gives a challenger that is both promoted and better? An offline study.

It reads the feature store and the champion that a fraud-ring demo left behind (``make demo``,
or the e2e test's home), and, for each window length and each moment in the drifted phase:

1. trains a challenger as the trainer's job does (``load_window``, ``card_split``, ``fit``);
2. scores the challenger and the champion on the challenger's holdout and applies the promotion
   policy as the promotion job does (on the holdout rows newer than the champion's training
   window, ``unseen_by``), with a healthy champion and with a degraded one (the trainer's
   alert-triggered runs), and, for comparison, on the whole holdout;
3. scores both on every labelled transaction of the next 12 and 24 simulated hours, which
   neither model saw: the truth the decision tries to predict.

    python -m bench.retrain_window --home .bottega --champion 1 \
        --champion-end 2026-11-22T17:59:59+00:00 --windows 2,3,4 \
        --ends 2026-11-25T10:00:00+00:00 2026-11-25T12:05:00+00:00

``--champion`` is a model version (read from the home's MLflow server, which must be running) or
the path of a logged model's directory; ``--champion-end`` is the end of its training window
(its ``bottega.holdout_end`` tag). The results go to ``--out`` as JSON lines, and to the
log. It is a study, not a benchmark in ``make bench``: it needs a demo's store.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from bottega.log import configure_logging
from bottega.registry import MODEL_NAMES, TAG_HOLDOUT_END, ModelVersion
from bottega.settings import BottegaSettings
from bottega.usecases.fraud.features.request import MODEL_FEATURES
from bottega.usecases.fraud.metrics import evaluate
from bottega.usecases.fraud.store import FraudFeatureStore
from pipelines.promote.job import unseen_by
from pipelines.promote.policy import PromotionPolicy, decide, paired_bootstrap
from pipelines.train.config import TrainConfig
from pipelines.train.data import card_split, load_window
from pipelines.train.fit import fit, labels_of

log = logging.getLogger(__name__)

HORIZONS_H = (12, 24)
# Labels that arrive after the horizon still count: the truth is every label, however late.
LABELS_LATER = timedelta(days=7)


def champion_model(settings: BottegaSettings, champion: str) -> Any:
    """A logged model's directory, or a version of the fraud model in the home's MLflow."""
    if Path(champion).is_dir():
        return mlflow.pyfunc.load_model(champion)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{MODEL_NAMES['fraud']}/{champion}")


def study(
    fs: FraudFeatureStore,
    champion: Any,
    champion_end: datetime,
    days: float,
    end: datetime,
    seed: int,
) -> dict[str, Any]:
    """Train a challenger on ``days`` ending at ``end``; decide; score both on what came next."""
    window = timedelta(days=days)
    frame = load_window(fs, end - window, end, end + timedelta(minutes=5))
    config = TrainConfig(window=window, holdout="cards", seed=seed)
    split = card_split(frame, config.val_fraction, config.holdout_fraction)
    result = fit(split, config, None)

    Scored = tuple[dict[str, float], np.ndarray]

    def both(rows: pd.DataFrame) -> tuple[Scored, Scored]:
        y = labels_of(rows)
        old = np.asarray(champion.predict(rows[list(MODEL_FEATURES)]), np.float64).ravel()
        new = np.asarray(result.scorer.score(rows), np.float64).ravel()
        return (evaluate(y, old), old), (evaluate(y, new), new)

    policy = PromotionPolicy()
    tags = {TAG_HOLDOUT_END: champion_end.isoformat()}
    tagged = ModelVersion(MODEL_NAMES["fraud"], "champion", "", tags=tags)
    # The champion of the study is split by time (the bootstrap's), so its window decides.
    challenger = ModelVersion(MODEL_NAMES["fraud"], "challenger", "")
    compared, _ = unseen_by(tagged, challenger, split.holdout, policy.min_unseen_frauds)
    out: dict[str, Any] = {
        "window_days": days,
        "end": end.isoformat(),
        "window_frauds": int(frame["is_fraud"].sum()),
    }
    choices = (
        ("decision", compared, False),
        ("decision_degraded", compared, True),
        ("whole_holdout", split.holdout, False),
    )
    for name, rows, degraded in choices:
        (old, old_scores), (new, new_scores) = both(rows)
        intervals = None
        if degraded:
            y = labels_of(rows)
            intervals = paired_bootstrap(
                y,
                new_scores,
                old_scores,
                resamples=policy.resamples,
                confidence=policy.confidence,
            )
        decision = decide(new, old, float(rows["is_fraud"].mean()), policy, degraded=intervals)
        out[name] = {
            "rows": len(rows),
            "frauds": int(rows["is_fraud"].sum()),
            "champion": old["pr_auc"],
            "challenger": new["pr_auc"],
            "promoted": decision.promote,
            "reason": decision.reason,
        }
    for hours in HORIZONS_H:
        later = load_window(fs, end, end + timedelta(hours=hours), end + LABELS_LATER)
        (old, _), (new, _) = both(later)
        out[f"next_{hours}h"] = {
            "frauds": int(later["is_fraud"].sum()),
            "champion": old["pr_auc"],
            "challenger": new["pr_auc"],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the study; one JSON line per window and moment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="the demo's state directory")
    parser.add_argument("--champion", required=True, help="model version, or a model directory")
    parser.add_argument(
        "--champion-end", required=True, help="end of the champion's training window (ISO 8601)"
    )
    parser.add_argument("--windows", default="2,3,4", help="window lengths, days, comma-separated")
    parser.add_argument("--ends", nargs="+", required=True, help="moments (ISO 8601, with zone)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/retrain_window.jsonl"))
    parser.add_argument("--append", action="store_true", help="add to --out, not replace it")
    args = parser.parse_args(argv)
    configure_logging()
    settings = BottegaSettings(home=args.home)
    fs = FraudFeatureStore(settings)
    champion = champion_model(settings, args.champion)
    champion_end = datetime.fromisoformat(args.champion_end)
    ends = [datetime.fromisoformat(t) for t in args.ends]
    days = [float(d) for d in args.windows.split(",")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a" if args.append else "w") as sink:
        for end, length in itertools.product(ends, days):
            row = study(fs, champion, champion_end, length, end, args.seed)
            log.info("studied", extra=row)
            sink.write(json.dumps(row) + "\n")
            sink.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
