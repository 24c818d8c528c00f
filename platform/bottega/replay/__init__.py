"""Replay: a scenario played against the running stack (``bottega replay``)."""
