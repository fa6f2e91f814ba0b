"""The grid's display: live progress while cells train, the plan of a dry run, the end summary.

Progress is one overall bar (cells finished, ETA from the trained cells' times) and a line per
running cell, whose epoch is read from its run folder, so the same display works for local
workers and Ray tasks on a shared filesystem.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer

from focalbench.grid.planner import GridCell, GridPlan
from focalbench.run_state import run_folder

if TYPE_CHECKING:
    from focalbench.grid.driver import GridResult


def eta_seconds(durations: Sequence[float], remaining: int, parallel: int) -> float | None:
    """Seconds left: mean time of the cells trained so far × cells left ÷ parallel slots.

    ``None`` while no cell has been trained (skipped cells say nothing about training time).
    """
    if remaining <= 0:
        return 0.0
    if not durations:
        return None
    return sum(durations) / len(durations) * remaining / max(1, parallel)


class GridProgress:
    """One overall bar (cells finished, ETA from the trained cells' times) and a line per running cell.

    A running cell's epoch comes from its own run folder on disk, so the
    same display works for local workers and Ray tasks on a shared filesystem.
    """

    def __init__(self, grid: GridPlan, results: str, parallel: int) -> None:
        from rich.console import Console
        from rich.live import Live

        self.grid, self.results, self.parallel = grid, results, parallel
        self.console = Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=2, transient=True)
        self.live.start()
        self._last = 0.0

    def advance(self, cell: GridCell) -> None:
        """Print one line for a finished cell above the live display."""
        result = cell.result
        mark = {
            "trained": "✓",
            "resumed": "✓",
            "skipped": "·",
            "failed": "✗",
            "busy": "…",
            "blocked": "…",
            "interrupted": "‖",
        }
        fold = "" if cell.fold is None else f" · fold {cell.fold}"
        extra = f" — {result.error}" if result.error else ""
        line = (
            f"{mark[result.outcome.value]} {cell.row} · {cell.dataset} · seed {cell.seed}{fold}: "
            f"{result.outcome.value} ({result.seconds:.0f}s){extra}"
        )
        self.live.console.print(line, highlight=False, markup=False)

    def update(
        self, in_flight: set[int], devices: dict[int, str], eta: float | None, force: bool = False
    ) -> None:
        from rich.console import Group
        from rich.text import Text

        now = time.monotonic()
        if (
            now - self._last < 0.5 and not force
        ):  # the epoch lines read files: twice a second is enough
            return
        self._last = now
        done = sum(1 for c in self.grid.cells if c.result)
        total = len(self.grid.cells)
        width = 30
        filled = int(width * done / total) if total else width
        eta_text = "ETA —" if eta is None else f"ETA {_fmt_seconds(eta)}"
        lines = [
            Text(
                f"{self.grid.name}  [{'█' * filled}{'░' * (width - filled)}] {done}/{total} cells  {eta_text}"
            )
        ]
        for i in sorted(in_flight):
            cell = self.grid.cells[i]
            lines.append(
                Text(
                    f"  ⟳ {cell.row} · {cell.dataset} · seed {cell.seed} "
                    f"[{devices.get(i, 'queued')}] {_epoch_text(self.results, cell)}"
                )
            )
        self.live.update(Group(*lines))

    def stop(self) -> None:
        self.live.stop()


def _epoch_text(results: str, cell: GridCell) -> str:
    folder = run_folder(results, cell.config.key)
    try:
        status = folder.status()
    except ValueError:  # being rewritten: say nothing this tick
        status = None
    total = folder.total_epochs()
    epoch = status.epoch if status else None
    if epoch is None:
        return "starting"
    return f"epoch {epoch}/{total}" if total else f"epoch {epoch}"


def _fmt_seconds(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def print_plan(grid: GridPlan) -> None:
    """A dry run's cells, one line each, with the run key each trains into."""
    typer.echo(f"{grid.name}: {grid.table.title}, {len(grid.cells)} cells")
    for c in grid.cells:
        fold = "" if c.fold is None else f" fold {c.fold}"
        key = c.config.key if c.config else "(after pruning)"
        typer.echo(f"  {c.row:<40} {c.dataset} seed {c.seed}{fold}  {key}")


def _short(error: str | None, width: int = 60) -> str:
    """First line of an error, clipped for the table (the full text is printed below it)."""
    line = (error or "").splitlines()[0] if error else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def print_summary(result: GridResult) -> None:
    """The end summary: one table row per cell, the counts, and every failure in full."""

    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{result.name} — {result.grid_dir / 'grid.json'}")
    for column in ("row", "dataset", "seed", "fold", "outcome", "test DSC", "error"):
        table.add_column(column)
    for cell in result.cells:
        res = cell.result
        dsc = (res.summary.get("test") or {}).get("dsc") if res else None
        table.add_row(
            cell.row,
            cell.dataset,
            str(cell.seed),
            "" if cell.fold is None else str(cell.fold),
            res.outcome.value if res else "not run",
            "" if dsc is None else f"{dsc:.4f}",
            _short(res.error) if res else "",
        )
    console.print(table)
    counts = result.counts()
    done = counts["trained"] + counts["resumed"]
    skipped = counts["skipped"] + counts["busy"] + counts["blocked"]
    console.print(
        f"done {done} (resumed {counts['resumed']}), skipped {skipped} "
        f"(already done {counts['skipped']}, busy {counts['busy']}, blocked {counts['blocked']}), "
        f"interrupted {counts['interrupted']}, failed {counts['failed']} in {result.seconds:.0f}s"
    )
    idle = idle_line(result)
    if idle:
        console.print(idle, highlight=False, markup=False)
    for failure in result.failures():
        console.print(
            f"[red]failed[/red] {failure['row']} · {failure['dataset']} · seed {failure['seed']}: {failure['error']}"
        )


def idle_line(result: GridResult) -> str | None:
    """One plain line when this driver trained nothing: every cell it met was already done or
    held by another live process (named by its pid), else ``None``."""
    results = [c.result for c in result.cells]
    if not results or any(r is None or r.outcome.value not in ("skipped", "busy") for r in results):
        return None
    done = sum(1 for r in results if r.outcome.value == "skipped")
    if done == len(results):
        return f"nothing to do: {_cells(done)} already done"
    held = sorted({r.error.removeprefix("being trained by ") for r in results if r.error})
    busy = len(results) - done
    by = f" ({', '.join(held)})" if held else ""
    already = f" ({done} already done)" if done else ""
    return (
        f"{_cells(busy)} {'is' if busy == 1 else 'are'} being trained by another process{by}"
        f"{already}; nothing left for this one"
    )


def _cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"
