"""Pin BLAS/OpenMP thread pools while models fit and score.

On small machines numpy's default threading oversubscribes the cores (an Elliptic Envelope fit
took 46 s with default threads on two cores and about 4 s pinned to one). The controller is
built once per process; building it inspects every loaded library, which costs milliseconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_controller: Any = None


@contextlib.contextmanager
def limited_threads(n_threads: int | None) -> Iterator[None]:
    """Limit BLAS and OpenMP pools to ``n_threads`` inside the block (``None``: no limit)."""
    global _controller  # noqa: PLW0603 - one controller per process, built lazily
    if n_threads is None:
        yield
        return
    if _controller is None:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

        _controller = ThreadpoolController()
    with _controller.limit(limits=int(n_threads)):
        yield
