"""A bounded pool for PDF rendering: WeasyPrint is CPU-bound and slow (seconds for a long
plan), so rendering without a cap let four PDF clients push every other request's latency up
(/health 4 -> 34 ms in the review). At most ``workers`` PDFs render at once per process, at
most ``queue`` more wait; past that the request is answered at once with 503 + Retry-After
instead of queueing without end.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from carepath.api.errors import ServiceError

__all__ = ["PdfPool", "Busy", "configure_default", "default_pool"]

T = TypeVar("T")


class Busy(ServiceError):
    status, code = 503, "busy"
    message = "The server is busy rendering other reports; retry shortly (see Retry-After)."


class PdfPool:
    def __init__(self, workers: int, queue: int, retry_after_s: int) -> None:
        self.capacity = workers + queue
        self.retry_after_s = retry_after_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="carepath-pdf")
        self._admitted = 0
        self._lock = threading.Lock()

    @property
    def admitted(self) -> int:
        return self._admitted

    async def run(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._admitted >= self.capacity:
                raise Busy(headers={"Retry-After": str(self.retry_after_s)})
            self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        finally:
            with self._lock:
                self._admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_default: PdfPool | None = None


def configure_default(pool: PdfPool) -> None:
    """The process's pool (CPU is per process): set by the runtime, used by api.rendering."""
    global _default
    _default = pool


def default_pool() -> PdfPool:
    global _default
    if _default is None:
        _default = PdfPool(1, 2, 5)
    return _default
