"""The kinds of fraud model, named without importing torch: the command line and the training
config check a kind before anything heavy is loaded."""

from __future__ import annotations

from typing import Literal, get_args

ModelKind = Literal["rules", "logreg", "mlp"]
MODEL_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)
