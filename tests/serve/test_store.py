"""The result store (``thoracic.serve.store``): bounded by count and by bytes."""

from __future__ import annotations

import numpy as np

from thoracic.serve.store import Entry, ResultStore, new_id


def test_store_drops_least_recently_used_by_count_and_by_bytes():
    store = ResultStore(max_entries=3, max_bytes=10_000 + 3 * 4096)
    entries = [Entry(new_id(), {}, False, {"image.png": b"x" * 3000}) for _ in range(4)]
    for e in entries[:3]:
        store.put(e)
    assert store.get(entries[0].id) is entries[0]  # now the most recent
    store.put(entries[3])
    assert store.get(entries[1].id) is None and len(store) == 3
    huge = Entry(new_id(), {}, False, {"image.png": b"x" * 50_000})
    store.put(huge)  # beyond the byte budget alone: kept, everything older dropped
    assert len(store) == 1 and store.get(huge.id) is huge
    assert len({new_id() for _ in range(100)}) == 100


def test_store_counts_the_arrays_of_a_kept_analysis():
    class A:
        heatmap = np.zeros((100, 100), np.float32)

    e = Entry(new_id(), {}, True, {}, analysis=A())
    store = ResultStore(max_entries=5, max_bytes=1 << 20)
    store.put(e)
    assert store.nbytes >= 40_000
    e.analysis = None
    store.resize(e)
    assert store.nbytes < 10_000
