"""Silence or record the warnings of the code a thread runs, without touching other threads.

``warnings.catch_warnings`` saves and restores process-wide state (the filter list and the
display hook). Two threads that overlap in it restore each other's state: the filters can stay
switched to "ignore" or "always" for the whole process afterwards, and one thread's block
swallows (or records) the warnings other threads raise meanwhile. The reader runs in threads
(the HTTP service's pool, the DICOM node's workers, reader threads of a batch), so it uses
:func:`quiet` instead:

- while any thread is inside ``quiet()``, an ``"always"`` filter sits in front of the others and
  ``warnings._showwarnmsg`` (the hook every warning passes through) is routed: a warning raised
  by a thread inside ``quiet()`` is dropped, or appended to that thread's record; one raised by
  any other thread goes to the hook that was there before, unchanged;
- the first thread in installs both, the last one out removes them (a counter under a lock), so
  overlapping blocks never restore stale state.

The cost for other threads while a block runs: their warnings are shown every time instead of
once per location (the ``"always"`` filter).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["quiet"]

_lock = threading.Lock()
_local = threading.local()
_active = 0
_saved_hook: Any = None
_FILTER = ("always", None, Warning, None, 0)


def _route(msg: warnings.WarningMessage) -> None:
    records = getattr(_local, "records", None)
    if getattr(_local, "depth", 0) > 0:
        if records is not None:
            records.append(msg)
        return
    hook = _saved_hook
    if hook is not None:
        hook(msg)


@contextmanager
def quiet(record: bool = False) -> Iterator[list[warnings.WarningMessage]]:
    """Drop the warnings this thread raises inside the block (or collect them: ``record=True``).

    Yields the list of recorded :class:`warnings.WarningMessage` (empty without ``record``).
    Nested blocks behave like nested ``catch_warnings``: the innermost block decides.
    """
    global _active, _saved_hook
    records: list[warnings.WarningMessage] = []
    outer = getattr(_local, "records", None)
    depth = getattr(_local, "depth", 0)
    with _lock:
        if _active == 0:
            _saved_hook = warnings._showwarnmsg  # type: ignore[attr-defined]
            warnings._showwarnmsg = _route  # type: ignore[attr-defined]
            warnings.filters.insert(0, _FILTER)  # type: ignore[attr-defined]
            warnings._filters_mutated()  # type: ignore[attr-defined]
        _active += 1
    _local.depth = depth + 1
    _local.records = records if record else None
    try:
        yield records
    finally:
        _local.depth = depth
        _local.records = outer
        with _lock:
            _active -= 1
            if _active == 0:
                if warnings._showwarnmsg is _route:  # type: ignore[attr-defined]
                    warnings._showwarnmsg = _saved_hook  # type: ignore[attr-defined]
                _saved_hook = None
                try:
                    warnings.filters.remove(_FILTER)  # type: ignore[attr-defined]
                except ValueError:  # someone reset the filters meanwhile
                    pass
                warnings._filters_mutated()  # type: ignore[attr-defined]
