import os

from thoracic._pool import run_tasks


def _work(x: int) -> int:
    if x == 3:
        os._exit(1)  # a native crash in a worker: the process dies without a Python exception
    return x * 10


def test_a_crashing_task_costs_only_itself():
    results = sorted(run_tasks(_work, [(i,) for i in range(8)], 2, lambda task: -task[0]))
    assert results == [-3, 0, 10, 20, 40, 50, 60, 70]


def test_in_process_when_one_worker():
    assert list(run_tasks(_work, [(1,), (2,)], 1, lambda task: None)) == [10, 20]
