"""Grid overhead: the share of a smoke grid's wall time not spent training inside cells.

Runs the paper-000 ``--attention se`` study (5 cells, incl. prune + retrain) and ``--study
losses`` (9 cells) on the shipped sample with the ``smoke`` protocol, one local worker on CPU,
then reruns each (every cell skipped: the cost of resuming a finished grid).

    overhead = wall(ablate) − Σ cell seconds

where a cell's seconds span its ``run_cell`` call (lock, status, ``train``), so the overhead
counts planning, worker spawn and its ``import torch``, task dispatch, pruning decisions,
``grid.json`` writes and result collection — everything the grid adds around training. Target:
< 5 % of the wall time. Usage::

    OMP_NUM_THREADS=1 python benchmarks/grid_overhead.py [--epochs N] [--results DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from focalbench.grid import ablate


GRIDS = {"attention-se": {"attention": "se"}, "losses": {"study": "losses"}}


def measure(study: dict, results: str, epochs: int | None) -> tuple[float, float, int]:
    start = time.perf_counter()
    grid = ablate("sample", **study, protocol="smoke", epochs=epochs, device="cpu", results=results,
                  jobs=1, progress=False)
    wall = time.perf_counter() - start
    inside = sum(c.result.seconds for c in grid.cells if c.result)
    if grid.failures():
        raise SystemExit(f"grid failed: {grid.failures()}")
    return wall, inside, len(grid.cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per cell (default: the smoke protocol's)")
    parser.add_argument("--results", default=None, help="results folder (default: a temporary one)")
    args = parser.parse_args()
    results = args.results or tempfile.mkdtemp(prefix="focalbench-grid-overhead-")
    # Imported here, not at the top: spawned workers re-import this script as their __main__.
    import torch

    print(f"device: CPU ({platform.machine()}, {os.cpu_count()} cores), torch {torch.__version__}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print("| grid (smoke, sample, 1 CPU worker) | cells | wall s | inside cells s | overhead s | overhead % | rerun s (all skipped) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, study in GRIDS.items():
        wall, inside, n = measure(study, results, args.epochs)
        rerun, _, _ = measure(study, results, args.epochs)
        overhead = wall - inside
        print(f"| {name} | {n} | {wall:.1f} | {inside:.1f} | {overhead:.2f} | {100 * overhead / wall:.1f} | {rerun:.2f} |",
              flush=True)

if __name__ == "__main__":
    main()
