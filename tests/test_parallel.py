"""Work spread over processes: same results as one process; a dying worker is an error, not a hang."""

from __future__ import annotations

import os

import pytest

from imgtrain.parallel import WorkerCrashedError, process_map


def square(x: int) -> int:
    return x * x


def die_on_seven(x: int) -> int:
    if x == 7:
        os._exit(3)
    return x


def test_results_in_order_as_with_one_process():
    tasks = list(range(200))
    assert list(process_map(square, tasks, workers=2, progress=False)) == [x * x for x in tasks]


def test_dead_worker_raises_instead_of_hanging():
    with pytest.raises(WorkerCrashedError, match="--workers 1"):
        list(process_map(die_on_seven, list(range(200)), workers=2, progress=False))
