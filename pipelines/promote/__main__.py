"""``python -m pipelines.promote [--version N] [--margin 0.005] [--log-loss-tolerance 0.02]``."""

from __future__ import annotations

import argparse
import json
import sys

from mlflow.exceptions import MlflowException

from bottega.errors import BottegaError
from bottega.log import configure_logging
from bottega.registry import MODEL_NAMES, MlflowRegistry, publish_model_event, registry_failure
from bottega.settings import BottegaSettings, load_settings
from bottega.usecases.fraud.store import FraudFeatureStore
from pipelines.promote.job import promote
from pipelines.promote.policy import PromotionPolicy


def main(argv: list[str] | None = None) -> int:
    """Decide on one version; print the decision as JSON; exit 1 on an error.

    A refused challenger is a normal outcome (exit 0, ``"promoted": false``).
    """
    defaults = PromotionPolicy()
    parser = argparse.ArgumentParser(prog="python -m pipelines.promote", description=__doc__)
    parser.add_argument("--version", default=None, help="default: the challenger alias")
    parser.add_argument("--margin", type=float, default=defaults.pr_auc_margin)
    parser.add_argument("--log-loss-tolerance", type=float, default=defaults.log_loss_tolerance)
    parser.add_argument("--min-lift", type=float, default=defaults.min_lift)
    parser.add_argument(
        "--min-unseen-frauds",
        type=int,
        default=defaults.min_unseen_frauds,
        help="frauds needed to compare only on rows newer than the champion's training window",
    )
    parser.add_argument(
        "--champion-degraded",
        action="store_true",
        help="a quality alert on live traffic asked for this challenger: promote it unless the "
        "holdout shows it worse (the trainer passes this for ModelQualityDegraded)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(BottegaSettings)
        configure_logging(settings.log_level, settings.log_format)
        import mlflow

        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        policy = PromotionPolicy(
            pr_auc_margin=args.margin,
            log_loss_tolerance=args.log_loss_tolerance,
            min_lift=args.min_lift,
            min_unseen_frauds=args.min_unseen_frauds,
        )
        report = promote(
            MlflowRegistry(settings.mlflow_tracking_uri),
            FraudFeatureStore(settings),
            MODEL_NAMES["fraud"],
            version=args.version,
            policy=policy,
            publish=lambda event: publish_model_event(settings.kafka, event),
            champion_degraded=args.champion_degraded,
        )
    except BottegaError as exc:
        # One line, for a person and for the trainer (which reads it back): not a log record
        # as well, which would say the same thing twice.
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except MlflowException as exc:
        # The registry down or refusing: one line that says so, not a traceback that the
        # trainer would have to dig the cause out of.
        sys.stderr.write(f"error: {registry_failure(exc)}\n")
        return 1
    sys.stdout.write(json.dumps(report.to_dict()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
