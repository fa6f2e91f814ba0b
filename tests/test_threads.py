"""The thread budget: the arithmetic, and what a real grid worker process ends up with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_executors import fake_train

from focalbench import threads
from focalbench.grid import ablate
from focalbench.store import atomic_write_json, read_json


@pytest.mark.parametrize(
    ("cores", "concurrent", "on_gpu", "expected"),
    [
        (2, 1, False, 2),  # one cell has the machine
        (2, 2, False, 1),
        (2, 5, False, 1),  # never below one thread
        (16, 4, False, 4),
        (16, 3, False, 5),  # floor(16 / 3)
        (16, 1, True, 2),  # a GPU cell keeps few host threads however many cores there are
        (16, 16, True, 1),
    ],
)
def test_each_cell_gets_an_equal_share_of_the_cores(cores, concurrent, on_gpu, expected):
    assert threads.threads_per_cell(cores, concurrent, on_gpu) == expected


def test_default_jobs_is_one_cell_per_core_but_no_more_than_the_grid_has():
    assert threads.default_jobs(2) == 2
    assert threads.default_jobs(8, cells=3) == 3
    assert threads.default_jobs(1, cells=9) == 1


def recording_train(config, results, **kwargs):
    """fake_train, after writing this worker's thread settings to ``results/threads-<pid>.json``."""
    import torch

    atomic_write_json(
        Path(results) / f"threads-{os.getpid()}.json",
        {
            "intra": torch.get_num_threads(),
            "interop": torch.get_num_interop_threads(),
            "env": {name: os.environ.get(name) for name in threads.POOL_VARIABLES},
        },
    )
    return fake_train(config, results, **kwargs)


@pytest.mark.parametrize("jobs", [1, 2])
def test_every_grid_worker_sets_its_share_of_threads_before_training(tmp_path, jobs):
    # The test process runs with OMP_NUM_THREADS=1 and torch's default inter-op pool: a worker
    # that inherited them would report 1 intra-op thread for jobs=1 and >1 inter-op threads.
    result = ablate(
        "sample",
        models="unet",
        losses="dice,ce",
        protocol="smoke",
        device="cpu",
        results=tmp_path,
        jobs=jobs,
        progress=False,
        train_fn=recording_train,
    )
    assert result.counts()["trained"] == 2
    seen = [read_json(p) for p in tmp_path.glob("threads-*.json")]
    assert seen  # at least one worker trained a cell
    share = max(1, threads.cpu_cores() // jobs)
    for worker in seen:
        assert (worker["intra"], worker["interop"]) == (share, 1)
        assert set(worker["env"].values()) == {str(share)}
