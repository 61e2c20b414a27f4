"""A bounded in-memory store of recent results, for the download routes and the viewer.

Entries are dropped least recently used first when there are more than ``max_entries`` of them
or their estimated size exceeds ``max_bytes``; the newest entry is always kept. Ids are random
(:func:`new_id`), never derived from the upload or its patient.

>>> s = ResultStore(max_entries=2, max_bytes=1 << 20)
>>> a, b, c = (Entry(id=i, summary={}, is_dicom=False, files={"image.png": b"x" * 10}) for i in "abc")
>>> for e in (a, b, c):
...     s.put(e)
>>> s.get("a") is None, s.get("c") is c, len(s)
(True, True, 2)
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Entry", "ResultStore", "new_id"]


def new_id() -> str:
    """A random, URL-safe result id (128 bits)."""
    return secrets.token_urlsafe(16)


@dataclass(eq=False)
class Entry:
    """One kept result.

    Attributes
    ----------
    id:
        The random result id.
    summary:
        The JSON the analyze route answered.
    is_dicom:
        The upload was a DICOM (SR, GSPS and SEG can be made from it).
    files:
        Rendered downloads by name (``image.png``, ``heatmap.png``, ``lungs.png``, ``sr.dcm``, ...).
    analysis:
        The full analysis, kept for DICOM uploads until their DICOM results are made.
    dicom_min_score:
        The SR and GSPS carry every finding from this score (``None``: the detector's operating points).
    maps:
        What the classifier's per-finding heatmaps are drawn from (the prediction, with its
        ``map_labels`` and ``finding_map``), when it makes them; each is rendered on first
        request into ``files`` (``heatmap-<label slug>.png``).
    """

    id: str
    summary: dict[str, Any]
    is_dicom: bool
    files: dict[str, bytes] = field(default_factory=dict)
    analysis: Any = None
    dicom_min_score: float | None = None
    maps: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def nbytes(self) -> int:
        """An estimate of the memory the entry holds."""
        n = sum(len(v) for v in self.files.values()) + 4096
        a = self.analysis
        if a is not None:
            for arr in (
                getattr(getattr(a, "radiograph", None), "pixels", None),
                getattr(a, "heatmap", None),
                getattr(getattr(a, "lungs", None), "mask", None),
            ):
                if isinstance(arr, np.ndarray):
                    n += arr.nbytes
        feature = getattr(getattr(self.maps, "classification", None), "feature", None)
        if isinstance(feature, np.ndarray):
            n += feature.nbytes
        return n


class ResultStore:
    """Thread-safe LRU of :class:`Entry` bounded by count and bytes."""

    def __init__(self, max_entries: int = 32, max_bytes: int = 512 << 20) -> None:
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, Entry] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def put(self, entry: Entry) -> None:
        """Add (or refresh) an entry and drop the oldest ones beyond the bounds."""
        with self._lock:
            self._items[entry.id] = entry
            self._items.move_to_end(entry.id)
            self._sizes[entry.id] = entry.nbytes()
            self._evict()

    def resize(self, entry: Entry) -> None:
        """Account for an entry whose files or analysis changed."""
        with self._lock:
            if entry.id in self._items:
                self._sizes[entry.id] = entry.nbytes()
                self._evict()

    def get(self, id: str) -> Entry | None:
        with self._lock:
            entry = self._items.get(id)
            if entry is not None:
                self._items.move_to_end(id)
            return entry

    def _evict(self) -> None:
        while len(self._items) > 1 and (
            len(self._items) > self.max_entries or sum(self._sizes.values()) > self.max_bytes
        ):
            old, _ = self._items.popitem(last=False)
            self._sizes.pop(old, None)
