"""``python -m pipelines.train [--model mlp|logreg|rules] [--window 7d] [--config FILE]``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from bottega.errors import BottegaError, ConfigError
from bottega.log import configure_logging
from bottega.registry import registry_failure
from bottega.settings import BottegaSettings, load_settings
from bottega.usecases.fraud.kinds import MODEL_KINDS
from bottega.usecases.fraud.scenario import parse_duration
from pipelines.train.config import load_config


def _utc_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _fail(line: str) -> int:
    """One line, for a person and for the trainer (which reads it back): not a log record as
    well, which would say the same thing twice."""
    sys.stderr.write(f"error: {line}\n")
    return 1


def main(argv: list[str] | None = None) -> int:
    """Train, log and register one model; print its report as JSON; exit 1 on a user error."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.train", description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="a YAML training config")
    parser.add_argument("--model", choices=MODEL_KINDS, default=None)
    parser.add_argument("--window", default=None, help="window length, e.g. 7d or 36h")
    parser.add_argument("--end", type=_utc_time, default=None, help="ISO-8601 window end")
    parser.add_argument("--imbalance", choices=("class_weights", "focal", "downsample"))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    parser.add_argument(
        "--holdout",
        choices=("newest", "cards"),
        default=None,
        help="hold out the newest rows (default) or whole cards over the window",
    )
    parser.add_argument(
        "--shuffle-labels", action="store_true", default=None, help=argparse.SUPPRESS
    )
    parser.add_argument("--no-register", action="store_true", help="log the run, register nothing")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(BottegaSettings)
        configure_logging(settings.log_level, settings.log_format)
        try:
            window = parse_duration(args.window) if args.window else None
        except ValueError:
            raise ConfigError(f"not a duration: {args.window!r}", hint="e.g. 7d or 36h") from None
        config = load_config(
            args.config,
            model=args.model,
            window=window,
            end=args.end,
            imbalance=args.imbalance,
            seed=args.seed,
            epochs=args.epochs,
            device=args.device,
            holdout=args.holdout,
            shuffle_labels=args.shuffle_labels,
        )
    except BottegaError as exc:
        return _fail(str(exc))
    # The job imports torch, Feast and MLflow (about 10 s on 2 cores): only once the arguments
    # and the config are known to be good, so that a mistake in them is reported at once.
    from mlflow.exceptions import MlflowException

    from pipelines.train.job import train

    try:
        report = train(settings, config, register=not args.no_register)
    except BottegaError as exc:
        return _fail(str(exc))
    except MlflowException as exc:
        # The registry down or refusing: one line that says so, not a traceback that the
        # trainer would have to dig the cause out of.
        return _fail(registry_failure(exc))
    sys.stdout.write(json.dumps(report.to_dict()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
