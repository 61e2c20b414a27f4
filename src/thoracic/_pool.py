"""Process pools for work that must survive a crashing decoder: a native crash costs only its task.

- :func:`run_tasks`: many tasks over a pool of processes (``thoracic convert``, ``dataset export``);
- :func:`run_alone`: one task in a fresh process of its own, the step that finds the culprit after
  a crash (also the restart of :class:`~thoracic.inference.batch.BatchPredictor`'s readers);
- :func:`process_pool`: the pool itself.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

R = TypeVar("R")

__all__ = ["process_pool", "run_alone", "run_tasks"]


def process_pool(workers: int, *, forkserver: bool = False) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes.

    With ``forkserver`` (where the platform has it) the workers are forked from a fresh server
    process, not from this one: forking a process while ONNX Runtime and reader threads run could
    copy a held lock.
    """
    if not forkserver:
        return ProcessPoolExecutor(max_workers=workers)
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def run_alone(fn: Callable[..., R], task: tuple, crashed: Callable[[tuple], R], *, forkserver: bool = False) -> R:
    """``fn(*task)`` in a fresh process of its own, or ``crashed(task)`` when that process dies."""
    try:
        with process_pool(1, forkserver=forkserver) as pool:
            return pool.submit(fn, *task).result()
    except BrokenProcessPool:
        return crashed(task)


def run_tasks(
    fn: Callable[..., R], tasks: Iterable[tuple], workers: int, crashed: Callable[[tuple], R]
) -> Iterator[R]:
    """Yield ``fn(*task)`` for every task, in completion order, from ``workers`` processes.

    ``fn`` must return a result for bad input rather than raise. A native crash (a segfault in a
    decoder) kills the pool: the tasks then in flight are retried one at a time, each in a fresh
    process (:func:`run_alone`), so only the culprit gets ``crashed(task)`` as its result; the rest
    carry on in a new pool. ``workers <= 1`` runs in this process.
    """
    tasks = list(tasks)
    if workers <= 1 or len(tasks) <= 1:
        yield from (fn(*t) for t in tasks)
        return
    suspects: list[tuple] = []
    yield from _pass(fn, tasks, workers, suspects, crashed)
    for task in suspects:
        yield run_alone(fn, task, crashed)


def _pass(fn: Callable[..., R], tasks: list[tuple], workers: int, suspects: list[tuple],
          crashed: Callable[[tuple], R]) -> Iterator[R]:
    queue = iter(tasks)
    broken = False
    with process_pool(workers) as pool:
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
