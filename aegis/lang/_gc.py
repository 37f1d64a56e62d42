"""Pause Python's cyclic garbage collector while a large set is built.

Parsing and compiling 10,000 rules allocates a few million long-lived objects; every time the
collector's thresholds trip it re-scans all of them, which doubles the load time and finds
nothing (the objects are all still in use). Large loads therefore run with the collector
paused, and restore its state afterwards. Small loads are left alone.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LARGE", "paused_gc"]

LARGE = 256 * 1024
"""Sources larger than this many characters (about 2,000 rules) pause the collector."""


@contextmanager
def paused_gc(size: int) -> Iterator[None]:
    """Pause the cyclic collector for the block when ``size`` is at least :data:`LARGE`.

    The collector is process-wide: another thread building at the same time may see it
    paused (its objects are collected afterwards) or re-enabled early (it is then only
    slower). Reference counting, which frees almost everything, is never paused.
    """
    pause = size >= LARGE and gc.isenabled()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if pause:
            gc.enable()
