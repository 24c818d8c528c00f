"""Bottega's batch jobs, one package each."""
