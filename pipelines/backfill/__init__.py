"""Backfill: N days of simulated history into the feature store, without Kafka."""
