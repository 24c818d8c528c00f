"""The training pipeline: ``python -m pipelines.train``."""
