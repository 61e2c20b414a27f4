"""The admission gate (``thoracic.serve.gate``): capacity, refusals, slots given back."""

from __future__ import annotations

import asyncio
import threading

from thoracic.serve.gate import Gate


def test_gate_admits_capacity_then_refuses_and_estimates_the_wait():
    gate = Gate(concurrency=2, queue=1, retry_after_max=30)
    assert [gate.try_enter() for _ in range(4)] == [True, True, True, False]
    assert 1 <= gate.retry_after() <= 30
    for _ in range(3):
        gate.leave()
    assert gate.in_flight == 0 and gate.try_enter()
    gate.leave()
    gate.close()


def test_gate_gives_the_slot_back_only_when_the_work_is_done_even_if_the_caller_gives_up():
    gate = Gate(concurrency=1, queue=1)
    release = threading.Event()

    async def scenario():
        assert gate.try_enter() and gate.try_enter()
        running = asyncio.ensure_future(gate.run(release.wait, 10))
        waiting = asyncio.ensure_future(gate.run(lambda: "never"))
        await asyncio.sleep(0.05)
        assert gate.running == 1 and gate.in_flight == 2
        running.cancel()  # the client went away: the analysis still runs, its slot stays taken
        waiting.cancel()  # never started: its slot is free at once
        await asyncio.sleep(0.05)
        assert gate.in_flight == 1
        assert gate.try_enter()  # the waiting request's slot is free again
        gate.leave()
        release.set()
        for _ in range(100):
            if gate.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert gate.in_flight == 0 and gate.running == 0

    asyncio.run(scenario())
    gate.close()
