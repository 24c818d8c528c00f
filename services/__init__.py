"""Bottega's long-running processes, one package each."""
