"""thoracic._warnings.quiet: per-thread silencing that never leaks into other threads."""

from __future__ import annotations

import threading
import warnings

from thoracic._warnings import quiet


def test_quiet_drops_and_records_this_threads_warnings():
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        with quiet():
            warnings.warn("dropped")
        with quiet(record=True) as rec:
            warnings.warn("kept")
            with quiet():
                warnings.warn("inner drop")
            with quiet(record=True) as inner:
                warnings.warn("inner kept")
        warnings.warn("after")
    assert [str(w.message) for w in rec] == ["kept"]
    assert [str(w.message) for w in inner] == ["inner kept"]
    assert [str(w.message) for w in outside] == ["after"]
    assert warnings.filters == before


def test_overlapping_threads_restore_the_process_state_and_spare_other_threads():
    """catch_warnings in overlapping threads leaves its filters behind; quiet() does not."""
    seen: list[str] = []
    original_hook = warnings._showwarnmsg
    filters_before = list(warnings.filters)
    a_in, b_in, a_out, other_done = (threading.Event() for _ in range(4))
    records: dict[str, list[str]] = {}

    def a() -> None:
        with quiet(record=True) as rec:
            a_in.set()
            b_in.wait(5)
            warnings.warn("from a")
        records["a"] = [str(w.message) for w in rec]
        a_out.set()

    def b() -> None:
        a_in.wait(5)
        with quiet(record=True) as rec:
            b_in.set()
            a_out.wait(5)  # a leaves first: with catch_warnings that restores a's stale state
            other_done.wait(5)
            warnings.warn("from b")
        records["b"] = [str(w.message) for w in rec]

    def other() -> None:
        a_out.wait(5)
        warnings.warn("from another thread")  # while b is still inside quiet()
        other_done.set()

    warnings._showwarnmsg = lambda msg: seen.append(str(msg.message))
    try:
        threads = [threading.Thread(target=f) for f in (a, b, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        hook_after = warnings._showwarnmsg
    finally:
        warnings._showwarnmsg = original_hook
    assert records == {"a": ["from a"], "b": ["from b"]}
    assert seen == ["from another thread"]  # delivered to the hook that was there, not swallowed
    assert hook_after is not None and hook_after.__name__ == "<lambda>"  # our hook is gone again
    assert warnings.filters == filters_before
