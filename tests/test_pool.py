"""The worker pools of ``thoracic._pool``: a crash costs only its own task."""

import multiprocessing

from helpers import work_or_die

from thoracic._pool import run_alone, run_tasks


def _crashed(task: tuple) -> int:
    return -task[0]


def test_a_crashing_task_costs_only_itself():
    results = sorted(run_tasks(work_or_die, [(i,) for i in range(8)], 2, lambda task: -task[0]))
    assert results == [-3, 0, 10, 20, 40, 50, 60, 70]


def test_in_process_when_one_worker():
    assert list(run_tasks(work_or_die, [(1,), (2,)], 1, lambda task: None)) == [10, 20]


def test_run_alone_survives_its_crash():
    assert run_alone(work_or_die, (3,), _crashed) == -3
    assert run_alone(work_or_die, (2,), _crashed) == 20
    if "forkserver" in multiprocessing.get_all_start_methods():
        assert run_alone(work_or_die, (3,), _crashed, forkserver=True) == -3
