"""The demo: the closed loop, end to end, on the running stack (``bottega demo``)."""
