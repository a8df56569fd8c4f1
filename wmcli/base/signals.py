"""Ctrl-C as a request: long loops (collection, evaluation, training) stop between two steps and
keep what they finished (episodes written, a checkpoint saved) instead of dying mid-write."""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def stop_on_sigint():
    """Turn the first Ctrl-C into a request to stop after the current step (a second one
    interrupts at once). Interrupting ale-py's vector env between sending actions and receiving
    their results can leave its worker threads waiting forever, so the loop must end cleanly."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
