"""Ctrl-C during a replay: the first stops it cleanly, one passed on twice (as Docker's signal
proxies do) is still the first, and a second one later aborts."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from bottega.cli.replay import SAME_INTERRUPT_S, interrupt_sets


def test_one_ctrl_c_delivered_twice_stops_cleanly_and_a_later_one_aborts() -> None:
    stop = threading.Event()
    # What the process had: Python's default_int_handler, or SIG_IGN where it was started as a
    # background job of a non-interactive shell, which ignores SIGINT for its children.
    before = signal.getsignal(signal.SIGINT)
    with interrupt_sets(stop):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the same Ctrl-C, passed on twice
        assert stop.is_set()
        time.sleep(SAME_INTERRUPT_S + 0.1)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here, in the main thread
    # The handlers before it are back.
    assert signal.getsignal(signal.SIGINT) is before
