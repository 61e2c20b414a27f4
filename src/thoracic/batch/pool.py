"""Process pools for batch work that must survive a crashing decoder."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

R = TypeVar("R")

__all__ = ["run_tasks"]


def run_tasks(
    fn: Callable[..., R], tasks: Iterable[tuple], workers: int, crashed: Callable[[tuple], R]
) -> Iterator[R]:
    """Yield ``fn(*task)`` for every task, in completion order, from ``workers`` processes.

    ``fn`` must return a result for bad input rather than raise. A native crash (a segfault in a
    decoder) kills the pool: the tasks then in flight are retried one at a time, each in a fresh
    process, so only the culprit gets ``crashed(task)`` as its result; the rest carry on in a new
    pool. ``workers <= 1`` runs in this process.
    """
    tasks = list(tasks)
    if workers <= 1 or len(tasks) <= 1:
        yield from (fn(*t) for t in tasks)
        return
    suspects: list[tuple] = []
    yield from _pass(fn, tasks, workers, suspects, crashed)
    for task in suspects:
        try:
            with ProcessPoolExecutor(max_workers=1) as pool:
                yield pool.submit(fn, *task).result()
        except BrokenProcessPool:
            yield crashed(task)


def _pass(fn, tasks: list[tuple], workers: int, suspects: list[tuple], crashed) -> Iterator:
    queue = iter(tasks)
    broken = False
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures: dict[Future, tuple] = {}
        while True:
            while not broken and len(futures) < workers * 2 and (task := next(queue, None)) is not None:
                futures[pool.submit(fn, *task)] = task
            if not futures:
                break
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for fut in done:
                task = futures.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    broken = True
                    suspects.append(task)
    if broken:
        yield from run_tasks(fn, list(queue), workers, crashed)
