"""Per-client request budgets of ``thoracic serve``: at most N requests per period and token.

A client is an API token; logs and the audit trail name it by :func:`token_id` (the first 12 hex
digits of the token's SHA-256), never by the token itself. The budget is a sliding window: a
request is admitted while the token made fewer than ``requests`` admitted requests in the last
``period`` seconds; otherwise the API answers 429 with ``Retry-After``: the whole seconds until
the oldest of them leaves the window. Refused requests do not count.

>>> limit = RateLimit.parse("2/min")
>>> limit, limit.describe()
(RateLimit(requests=2, period=60.0), '2 requests per 60 s')
>>> clock = iter([0.0, 1.0, 2.0, 61.5]).__next__
>>> limiter = RateLimiter(limit, clock=clock)
>>> [limiter.take("a") for _ in range(4)]  # admitted, admitted, retry after 58 s, admitted again
[0, 0, 58, 0]
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from thoracic.errors import ConfigError

__all__ = ["RateLimit", "RateLimiter", "token_id"]

_BASE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
               "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}
#: Seconds of each unit, plurals of the words included ("ms" is not minutes).
_UNITS = {**_BASE_UNITS, **{k + "s": v for k, v in _BASE_UNITS.items() if len(k) > 1}}
_FORM = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


def token_id(token: str) -> str:
    """How logs name a token: the first 12 hex digits of its SHA-256 (the token cannot be read back).

    >>> token_id("secret")
    '2bb80d537b1d'
    """
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:12]


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` requests per ``period`` seconds (per token)."""

    requests: int
    period: float

    def __post_init__(self) -> None:
        if int(self.requests) < 1:
            raise ConfigError(f"a rate limit needs at least 1 request per period, got {self.requests}")
        if not (math.isfinite(self.period) and self.period > 0):
            raise ConfigError(f"a rate limit's period must be positive, got {self.period}")
        object.__setattr__(self, "requests", int(self.requests))
        object.__setattr__(self, "period", float(self.period))

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``N/PERIOD``: ``60/min``, ``1000/h``, ``5/10s``, ``3/0.5s`` (units s, m or min, h, d).

        >>> RateLimit.parse("5/10s"), RateLimit.parse("1000/hour")
        (RateLimit(requests=5, period=10.0), RateLimit(requests=1000, period=3600.0))
        >>> RateLimit.parse("60 per minute")
        Traceback (most recent call last):
        thoracic.errors.ConfigError: '60 per minute' is not a rate limit: give N/PERIOD, e.g. 60/min, 1000/h or 5/10s
        """
        m = _FORM.match(text.lower())
        unit = _UNITS.get(m.group(3)) if m else None
        if not m or unit is None:
            raise ConfigError(f"{text!r} is not a rate limit: give N/PERIOD, e.g. 60/min, 1000/h or 5/10s")
        return cls(int(m.group(1)), float(m.group(2) or 1) * unit)

    def describe(self) -> str:
        return f"{self.requests} request{'s' if self.requests != 1 else ''} per {self.period:g} s"


class RateLimiter:
    """The sliding-window budgets of every client (thread-safe; memory: ``requests`` floats a client)."""

    def __init__(self, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._admitted: dict[str, deque[float]] = {}

    def take(self, client: str) -> int:
        """Count a request of ``client``: 0 when admitted, else the seconds to wait (at least 1)."""
        now = self._clock()
        with self._lock:
            times = self._admitted.setdefault(client, deque())
            while times and times[0] <= now - self.limit.period:
                times.popleft()
            if len(times) < self.limit.requests:
                times.append(now)
                return 0
            return max(1, math.ceil(times[0] + self.limit.period - now))
