"""Admission control: a fixed pool of worker threads and a bounded number of waiting requests.

A request first takes a slot (:meth:`Gate.try_enter`); with ``concurrency + queue`` slots taken
it is refused at once (the API answers 429 with :meth:`Gate.retry_after`), so neither memory nor
latency grows with the load. The slot is given back when the request's work has finished (or
when it gives up before handing work over), never earlier, so a client that disconnects cannot
leave more analyses running than there are workers.

>>> g = Gate(concurrency=1, queue=1)
>>> g.try_enter(), g.try_enter(), g.try_enter()
(True, True, False)
>>> g.leave(); g.leave(); g.in_flight
0
>>> g.close()
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["Gate"]

T = TypeVar("T")


class Gate:
    """``concurrency`` worker threads and at most ``queue`` requests waiting for them."""

    def __init__(self, concurrency: int, queue: int, *, retry_after_max: int = 60, typical_seconds: float = 2.0) -> None:
        self.concurrency = int(concurrency)
        self.capacity = int(concurrency) + int(queue)
        self.retry_after_max = int(retry_after_max)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._running = 0
        self._seconds = float(typical_seconds)  # moving average of one job's duration
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="thoracic-serve")

    @property
    def in_flight(self) -> int:
        """Requests holding a slot (reading their upload, waiting or running)."""
        with self._lock:
            return self._in_flight

    @property
    def running(self) -> int:
        with self._lock:
            return self._running

    def try_enter(self) -> bool:
        """Take a slot if one is free."""
        with self._lock:
            if self._in_flight >= self.capacity:
                return False
            self._in_flight += 1
            return True

    def leave(self) -> None:
        """Give a slot back."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def retry_after(self) -> int:
        """Seconds after which a slot is likely free (at least 1, at most ``retry_after_max``)."""
        with self._lock:
            ahead = max(1, self._in_flight - self.concurrency + 1)
            wait = self._seconds * ahead / self.concurrency
        return int(min(self.retry_after_max, max(1, math.ceil(wait))))

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            self._running += 1
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._running -= 1
                self._seconds = 0.8 * self._seconds + 0.2 * elapsed

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a worker; the caller's slot is given back when it has finished.

        The caller must hold a slot (:meth:`try_enter`) and, from this call on, no longer gives
        it back itself.
        """
        try:
            cf: Future[T] = self._executor.submit(self._timed, fn, *args)
        except BaseException:
            self.leave()
            raise
        cf.add_done_callback(lambda _f: self.leave())
        return await asyncio.wrap_future(cf)

    def close(self) -> None:
        """Stop the workers (waiting jobs are cancelled, running ones finish)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
