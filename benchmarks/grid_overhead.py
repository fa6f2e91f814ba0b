"""Grid overhead: the share of a smoke grid's wall time not spent training inside cells.

Runs the paper-000 ``--attention se`` study (5 cells, incl. prune + retrain) and ``--study
losses`` (9 cells) on the shipped sample with the ``smoke`` protocol, one local worker on CPU,
then reruns each (every cell skipped: the cost of resuming a finished grid).

    overhead = wall(ablate) − Σ cell seconds

where a cell's seconds span its ``run_cell`` call (lock, status, ``train``), so the overhead
counts planning, worker spawn and its ``import torch``, task dispatch, pruning decisions,
``grid.json`` writes and result collection — everything the grid adds around training. Target:
< 5 % of the wall time. ``--jobs 1 2`` runs each grid once per worker count (the thread budget
of ``focalbench.threads`` splits the cores between the workers) and adds the wall-time ratio to
the first; ``--executor ray`` runs the cells as Ray tasks instead (on a local Ray instance the
driver starts, its start-up counted, or on the cluster at ``--ray-address``; ``--jobs`` is then
ignored: Ray runs as many cells at once as the cluster has CPUs); ``--quick``: one 1-cell grid
of one epoch. Usage::

    python benchmarks/grid_overhead.py [--epochs N] [--jobs 1 2] [--results DIR] [--quick]
        [--executor local|ray] [--ray-address HOST:PORT] [--grids NAME ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from focalbench.grid import ablate

GRIDS = {"attention-se": {"attention": "se"}, "losses": {"study": "losses"}}
QUICK_GRIDS = {"one cell": {"models": "unet", "losses": "dice"}}


def measure(
    study: dict, results: str, epochs: int | None, jobs: int, executor: dict
) -> tuple[float, float, int]:
    start = time.perf_counter()
    grid = ablate(
        "sample",
        **study,
        protocol="smoke",
        epochs=epochs,
        device="cpu",
        results=results,
        jobs=jobs,
        progress=False,
        **executor,
    )
    wall = time.perf_counter() - start
    inside = sum(c.result.seconds for c in grid.cells if c.result)
    if grid.failures():
        raise SystemExit(f"grid failed: {grid.failures()}")
    return wall, inside, len(grid.cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per cell (default: the smoke protocol's)"
    )
    parser.add_argument("--results", default=None, help="results folder (default: a temporary one)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1], help="worker counts to compare")
    parser.add_argument("--grids", nargs="+", choices=sorted(GRIDS), default=sorted(GRIDS))
    parser.add_argument("--quick", action="store_true", help="one 1-cell grid of one epoch")
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument(
        "--ray-address", default=None, help="a running Ray cluster (--executor ray)"
    )
    args = parser.parse_args()
    executor = {"executor": args.executor}
    if args.executor == "ray":
        executor["ray_address"] = args.ray_address
        args.jobs = args.jobs[:1]  # Ray sizes the pool itself
    grids = QUICK_GRIDS if args.quick else {name: GRIDS[name] for name in args.grids}
    epochs = 1 if args.quick else args.epochs
    # Imported here, not at the top: spawned workers re-import this script as their __main__.
    import torch

    from focalbench.threads import cpu_cores

    print(
        f"device: CPU ({platform.machine()}, {cpu_cores()} cores, load average "
        f"{os.getloadavg()[0]:.1f}), torch {torch.__version__}"
    )
    print(
        "| grid (smoke, sample, CPU) | executor | jobs | cells | wall s | inside cells s | overhead s "
        "| overhead % | wall / wall at first jobs | rerun s (all skipped) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, study in grids.items():
        first = None
        for jobs in args.jobs:
            # A fresh folder per worker count: the second would otherwise skip every cell.
            results = tempfile.mkdtemp(prefix=f"focalbench-grid-overhead-{jobs}-", dir=args.results)
            wall, inside, n = measure(study, results, epochs, jobs, executor)
            rerun, _, _ = measure(study, results, epochs, jobs, executor)
            jobs_shown = jobs if args.executor == "local" else "Ray's"
            first = first or wall
            overhead = wall - inside
            print(
                f"| {name} | {args.executor} | {jobs_shown} | {n} | {wall:.1f} | {inside:.1f} | {overhead:.2f} | "
                f"{100 * overhead / wall:.1f} | {wall / first:.2f} | {rerun:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
