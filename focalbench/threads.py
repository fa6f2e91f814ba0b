"""The thread budget: how many CPU threads one training process may use.

Every torch process starts an intra-op pool as wide as the machine, an inter-op pool, and the
OpenMP/BLAS pools of NumPy and SciPy. Several grid cells packed on one machine then run
``cells × cores`` busy threads on ``cores`` cores and spend their time preempting each other (a
packed 5-cell smoke grid on 2 loaded cores took 463–489 s against 37 s quiet). So each worker
takes an equal share of the cores before it builds a network::

    intra-op threads = max(1, cores // concurrent cells),   inter-op threads = 1

and a GPU worker keeps at most :data:`GPU_WORKER_THREADS`: its host work is launching kernels.
"""

from __future__ import annotations

import contextlib
import os

# A GPU cell's CPU work is kernel launches and the odd host op; more threads only contend.
GPU_WORKER_THREADS = 2

# Pools read from the environment when their library loads (in this process, or a child).
POOL_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_cell(cores: int, concurrent: int, on_gpu: bool = False) -> int:
    """``max(1, cores // concurrent)`` intra-op threads, at most ``GPU_WORKER_THREADS`` on a GPU."""
    share = max(1, cores // max(1, concurrent))
    return min(share, GPU_WORKER_THREADS) if on_gpu else share


def default_jobs(cores: int, cells: int | None = None) -> int:
    """Parallel CPU cells when ``--jobs`` is not given: one per core (each then gets one thread),
    never more than the grid has cells."""
    jobs = max(1, cores)
    return jobs if cells is None else max(1, min(jobs, cells))


def limit_threads(threads: int) -> None:
    """Set this process's intra-op pools to ``threads`` and the inter-op pool to one thread.

    The environment variables reach pools not started yet (a BLAS loaded later, child
    processes); torch's pools are set directly, and threadpoolctl (when installed) resizes the
    OpenMP/BLAS pools already loaded.
    """
    for name in POOL_VARIABLES:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != 1:
        # The inter-op pool is fixed once it has run work; a worker calls this before any, so
        # only an interactive caller that already used it keeps its pool.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads)


def limit_worker_threads(device: str, concurrent: int) -> int:
    """A grid worker's budget: its share of this host's cores among ``concurrent`` workers.

    ``device`` is the worker's slot (``cpu``, ``cuda:N``, ``auto``). Returns the thread count set.
    """
    on_gpu = device.startswith("cuda")
    if device == "auto":
        import torch

        on_gpu = torch.cuda.is_available()
    threads = threads_per_cell(cpu_cores(), concurrent, on_gpu)
    limit_threads(threads)
    return threads
