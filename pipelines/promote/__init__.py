"""The promotion policy: ``python -m pipelines.promote``."""
