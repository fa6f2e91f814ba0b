"""Studies → grid cells → executors: the papers' grids as one resumable command.

A study is a list of table *rows* (a network and a loss, e.g. "Focal USE-Net (w₀ = 0)"); a grid
is every row × dataset × seed × fold, each a :class:`~focalbench.config.RunConfig` whose run
folder ``results/runs/<key>/`` is found again on rerun. The pruned rows of the attention studies
are *derived*: their config exists only once the zero-initialised Focal network of the same
dataset/seed/fold has finished, so they are planned with ``config=None`` and filled in by
:func:`focalbench.prune.pruned_config` the moment their source is done.

``results/grids/<name>/grid.json`` records the study, its target table, and every cell (row,
key, config, outcome, error); it is rewritten after each finished cell.

Studies (paper numbers are the files in ``../shared/papers``):

* ``--attention se`` / ``ag`` — paper 000 Table 3 / 4: U-Net, USE-Net / Attention U-Net, its Focal
  variant (focal weights w₀ = 1), the Focal variant with w₀ = 0, and that network pruned at 0.2
  and retrained (kept modules' w₀ = 1). Every row trains with the Unified Focal loss with the
  dataset's γ (paper 000 Table 1: DRIVE 0.1, 2018 DSB 0.2, CVC-ClinicDB 0.3).
* ``--study losses`` — paper 000 Table 2: U-Net with DSC, DSC+DPT, DSC+FDPT(ε=0.1), DSC+CE,
  DSC+CE+DPT, DSC+CE+FDPT, UFL, UFL+DPT, UFL+FDPT.
* ``--study focal-tversky`` — paper 003 Tables 1–2 (5-fold): U-Net with DL/TL/FTL, Attention
  U-Net with DL, the input-pyramid Attention U-Net with DL/TL/FTL.
* ``--study focusnet`` — paper 002 Tables 1–3: U-Net, R2U-Net, BCDU-Net, UNet++, Attention
  U-Net, FocusNet, FocusNet++ with the hybrid loss ALL-HL.
* the general form ``models × losses × seeds × folds``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from focalbench import threads
from focalbench.config import RunConfig, split_params
from focalbench.errors import FocalbenchError
from focalbench.executors import (
    CellResult,
    CellTask,
    ExecutorKind,
    LocalExecutor,
    Outcome,
    RayExecutor,
    TrainFn,
    local_slots,
    read_status,
    run_dir_of,
)
from focalbench.store import atomic_write_json, ensure_writable_dir, read_json, results_root, utc_now


class Study(str, Enum):
    losses = "losses"
    focal_tversky = "focal-tversky"
    focusnet = "focusnet"


class Attention(str, Enum):
    se = "se"
    ag = "ag"


@dataclass(frozen=True)
class Row:
    """One line of a paper table: a network and a loss (or a pruned copy of another row)."""

    label: str
    model: str = ""
    loss: str = ""
    model_params: dict[str, Any] = field(default_factory=dict)
    pruned_from: str | None = None  # label of the zero-initialised row whose run is pruned


@dataclass(frozen=True)
class StudyDef:
    name: str
    table: str
    protocol: str
    rows: Callable[[str | None], list[Row]]  # dataset -> rows (UFL's γ is the dataset's)
    folds: int | None = None
    datasets: str = ""  # the paper's datasets, for --help


def ufl_gamma(dataset: str) -> float:
    """γ of the Unified Focal loss for ``dataset`` (paper 000 Table 1), from the dataset catalogue."""
    from focalbench.datasets import paper_settings

    gamma = paper_settings(dataset, "paper000").get("ufl_gamma")
    if gamma is None:
        raise FocalbenchError(
            f"dataset {dataset!r} has no paper-000 UFL γ; use the general form, e.g. "
            f"--models unet --losses 'ufl(gamma=0.5)'"
        )
    return float(gamma)


def _ufl(dataset: str | None) -> str:
    """The UFL spec of ``dataset``; ``None`` (for --help) shows the symbol γ."""
    return "ufl(gamma=γ)" if dataset is None else f"ufl(gamma={ufl_gamma(dataset):g})"


def _attention_rows(kind: Attention) -> Callable[[str], list[Row]]:
    plain, net, focal = {
        Attention.se: ("USE-Net", "use-net", "focal-use-net"),
        Attention.ag: ("Attention U-Net", "attention-unet", "focal-attention-unet"),
    }[kind]

    def rows(dataset: str | None) -> list[Row]:
        loss = _ufl(dataset)
        zero = f"Focal {plain} (w0 = 0)"
        return [
            Row("U-Net", "unet", loss),
            Row(plain, net, loss),
            Row(f"Focal {plain} (w0 = 1)", focal, loss, {"focal_init": 1.0}),
            Row(zero, focal, loss, {"focal_init": 0.0}),
            Row(f"Pruned Focal {plain} (retrained)", pruned_from=zero),
        ]

    return rows


def _loss_rows(dataset: str | None) -> list[Row]:
    ufl = _ufl(dataset)
    specs = [
        ("DSC", "dice"), ("DSC + DPT", "dice+dpt"), ("DSC + FDPT", "dice+fdpt(eps=0.1)"),
        ("DSC + CE", "dice_ce"), ("DSC + CE + DPT", "dice_ce+dpt"),
        ("DSC + CE + FDPT", "dice_ce+fdpt(eps=0.1)"),
        ("UFL", ufl), ("UFL + DPT", f"{ufl}+dpt"), ("UFL + FDPT", f"{ufl}+fdpt(eps=0.1)"),
    ]
    return [Row(label, "unet", spec) for label, spec in specs]


def _focal_tversky_rows(dataset: str | None) -> list[Row]:
    # The deeply supervised network's "FTL" row is FTL on the side outputs and TL on the last
    # (paper 003 §2.3); its DL/TL rows score every output with the same loss.
    pyramid = "Attn U-Net + Multi-Input"
    return [
        Row("U-Net + DL", "unet", "dice"),
        Row("U-Net + TL", "unet", "tversky"),
        Row("U-Net + FTL", "unet", "focal_tversky"),
        Row("Attn U-Net + DL", "attention-unet", "dice"),
        Row(f"{pyramid} + DL", "pyramid-attention-unet", "dice"),
        Row(f"{pyramid} + TL", "pyramid-attention-unet", "tversky"),
        Row(f"{pyramid} + FTL", "pyramid-attention-unet", "deep_supervision"),
    ]


def _focusnet_rows(dataset: str | None) -> list[Row]:
    # Paper 002 Table 3 (2018 DSB) uses reduced widths for BCDU-Net/FocusNet/FocusNet++ (the
    # -small presets). Rows in Table 1's order; R2U-Net has no Table 3 row, so no reduced preset.
    small = "-small" if dataset == "dsb2018" else ""
    models = [("U-Net", "unet"), ("R2U-Net", "r2u-net"), ("BCDU-Net", f"bcdu-net{small}"),
              ("UNet++", "smp-unetplusplus"), ("Attn U-Net", "attention-unet"),
              ("FocusNet", f"focusnet{small}"), ("FocusNet++", f"focusnetpp{small}")]
    return [Row(label, model, "all_hybrid") for label, model in models]


STUDIES: dict[str, StudyDef] = {
    "attention-se": StudyDef("attention-se", "paper 000 Table 3 (Focal SE)", "paper000",
                             _attention_rows(Attention.se), datasets="drive, dsb2018, cvc-clinicdb"),
    "attention-ag": StudyDef("attention-ag", "paper 000 Table 4 (Focal AG)", "paper000",
                             _attention_rows(Attention.ag), datasets="drive, dsb2018, cvc-clinicdb"),
    Study.losses.value: StudyDef("losses", "paper 000 Table 2 (losses)", "paper000", _loss_rows,
                                 datasets="drive, dsb2018, cvc-clinicdb"),
    Study.focal_tversky.value: StudyDef("focal-tversky", "paper 003 Tables 1-2 (5-fold)", "paper003",
                                        _focal_tversky_rows, folds=5, datasets="bus, isic2018"),
    Study.focusnet.value: StudyDef("focusnet", "paper 002 Tables 1-3", "paper002", _focusnet_rows,
                                   datasets="isic2018, dsb2018"),
}


def studies_help() -> str:
    """The studies, their rows and target tables, for ``focalbench ablate --help``."""
    lines = []
    for key, study in STUDIES.items():
        flag = f"--attention {key.split('-')[1]}" if key.startswith("attention-") else f"--study {key}"
        rows = "; ".join(
            f"{row.label} = {row.model + ' + ' + row.loss if row.model else 'the w0 = 0 run pruned at --threshold, then retrained'}"
            for row in study.rows(None)
        )
        folds = f", {study.folds} folds" if study.folds else ""
        lines.append(f"{flag} → {study.table}{folds}; datasets {study.datasets}; protocol "
                     f"{study.protocol}. Rows: {rows}.")
    return "\n\n".join(lines)


@dataclass
class Cell:
    """One grid cell; ``config`` is ``None`` for a pruned row until its source has finished."""

    row: str
    dataset: str
    seed: int
    fold: int | None
    config: RunConfig | None
    source: int | None = None  # index of the cell a pruned row derives from
    result: CellResult | None = None
    note: str | None = None  # e.g. the kept positions of a pruned cell
    pruned_from: str | None = None  # key of the source run of a pruned cell

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "row": self.row, "dataset": self.dataset, "seed": self.seed, "fold": self.fold,
            "key": self.config.key if self.config else None,
            "config": self.config.to_dict() if self.config else None,
        }
        if self.source is not None:
            out.update(pruned_from=self.pruned_from, note=self.note)
        if self.result:
            out.update(outcome=self.result.outcome.value, error=self.result.error,
                       seconds=round(self.result.seconds, 3))
        return out


@dataclass
class GridPlan:
    name: str
    study: str
    table: str
    cells: list[Cell]


def _csv(values: str | Sequence[Any] | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = values.split(",")
    return [str(v).strip() for v in values if str(v).strip()]


def _on_cpu(device: str) -> bool:
    """Whether cells on ``device`` train on the CPU (``auto``: whether torch sees no CUDA)."""
    if device == "auto":
        import torch

        return not torch.cuda.is_available()
    return device == "cpu"


def _ints(values: str | Sequence[int] | None, flag: str) -> list[int]:
    try:
        return [int(v) for v in _csv(values)]
    except ValueError:
        raise FocalbenchError(f"{flag} takes integers separated by commas, e.g. {flag} 0,1,2") from None


def plan(
    dataset: str | Sequence[str],
    *,
    attention: Attention | str | None = None,
    study: Study | str | None = None,
    models: str | Sequence[str] | None = None,
    losses: str | Sequence[str] | None = None,
    seeds: str | Sequence[int] = (0,),
    folds: int | None = None,
    protocol: str | None = None,
    epochs: int | None = None,
    params: Sequence[str] = (),
    name: str | None = None,
) -> GridPlan:
    """Expand a study (or ``models × losses``) into cells: rows × datasets × seeds × folds.

    ``folds=K`` trains folds 0..K-1 of the dataset's split (``None``: the study's default, which
    is no fold split except paper 003's 5). ``params`` are ``--param`` pairs applied to every cell.
    """
    datasets = _csv(dataset)
    if not datasets:
        raise FocalbenchError("name the dataset(s): --dataset drive (or --dataset drive,dsb2018)")
    chosen = [flag for flag, value in (("--attention", attention), ("--study", study),
                                        ("--models/--losses", models or losses)) if value]
    if len(chosen) != 1:
        raise FocalbenchError(
            "pick one grid: --attention se|ag, --study losses|focal-tversky|focusnet, "
            "or --models a,b --losses x,y" + (f" (got {' and '.join(chosen)})" if chosen else "")
        )
    if attention:
        study_def = STUDIES[f"attention-{Attention(attention).value}"]
    elif study:
        study_def = STUDIES[Study(study).value]
    else:
        model_list, loss_list = _csv(models), _csv(losses)
        if not model_list or not loss_list:
            raise FocalbenchError("the general form needs both --models a,b and --losses x,y")
        study_def = StudyDef(
            "custom", "models × losses", "paper000",
            lambda _ds: [Row(f"{m} + {lo}", m, lo) for m in model_list for lo in loss_list],
        )
    protocol = protocol or study_def.protocol
    n_folds = folds if folds is not None else study_def.folds
    if n_folds is not None and n_folds < 2:
        raise FocalbenchError("--folds K needs K ≥ 2 (or leave it out for the fixed split)")
    fold_list: list[int | None] = list(range(n_folds)) if n_folds else [None]
    seed_list = _ints(seeds, "--seeds") or [0]
    model_params, loss_params, overrides = split_params(list(params))

    cells: list[Cell] = []
    for ds in datasets:
        rows = study_def.rows(ds)
        for seed in seed_list:
            for fold in fold_list:
                index_of: dict[str, int] = {}
                for row in rows:
                    index_of[row.label] = len(cells)
                    if row.pruned_from is not None:
                        cells.append(Cell(row.label, ds, seed, fold, None, source=index_of[row.pruned_from]))
                        continue
                    config = RunConfig(
                        dataset=ds, model=row.model, loss=row.loss, protocol=protocol, seed=seed,
                        fold=fold, epochs=epochs, model_params={**row.model_params, **model_params},
                        loss_params=dict(loss_params), overrides=dict(overrides),
                    )
                    cells.append(Cell(row.label, ds, seed, fold, config))
    if name is None:
        fingerprint = json.dumps([c.config.to_dict() if c.config else c.source for c in cells], sort_keys=True)
        digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:8]
        name = f"{study_def.name}-{'+'.join(datasets)}-{protocol}-{digest}"
    return GridPlan(name, study_def.name, study_def.table, cells)


@dataclass
class GridResult:
    name: str
    grid_dir: Path
    cells: list[Cell]
    seconds: float

    def counts(self) -> dict[str, int]:
        out = {o.value: 0 for o in Outcome}
        for cell in self.cells:
            if cell.result:
                out[cell.result.outcome.value] += 1
        return out

    def failures(self) -> list[dict[str, Any]]:
        return [
            {"row": c.row, "dataset": c.dataset, "seed": c.seed, "fold": c.fold,
             "key": c.config.key if c.config else None, "error": c.result.error,
             "previously_failed": c.result.previously_failed}
            for c in self.cells if c.result and c.result.outcome is Outcome.failed
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "grid_dir": str(self.grid_dir), "seconds": round(self.seconds, 3),
                "counts": self.counts(), "failures": self.failures(),
                "cells": [c.to_dict() for c in self.cells]}


def eta_seconds(durations: Sequence[float], remaining: int, parallel: int) -> float | None:
    """Seconds left: mean time of the cells trained so far × cells left ÷ parallel slots.

    ``None`` while no cell has been trained (skipped cells say nothing about training time).
    """
    if remaining <= 0:
        return 0.0
    if not durations:
        return None
    return sum(durations) / len(durations) * remaining / max(1, parallel)


def ablate(
    dataset: str | Sequence[str],
    *,
    attention: Attention | str | None = None,
    study: Study | str | None = None,
    models: str | Sequence[str] | None = None,
    losses: str | Sequence[str] | None = None,
    seeds: str | Sequence[int] = (0,),
    folds: int | None = None,
    protocol: str | None = None,
    epochs: int | None = None,
    params: Sequence[str] = (),
    device: str = "auto",
    results: str | os.PathLike | None = None,
    executor: ExecutorKind | str = ExecutorKind.local,
    gpus: str | Sequence[int] | None = None,
    jobs_per_gpu: int = 1,
    jobs: int | None = None,
    ray_address: str | None = None,
    retry_failed: bool = False,
    threshold: float = 0.2,
    name: str | None = None,
    progress: bool = True,
    train_fn: TrainFn | None = None,
    data_dir: str | os.PathLike | None = None,
) -> GridResult:
    """Run a study's grid; finished cells are skipped, interrupted ones resumed.

    ``data_dir`` (the prepared datasets) reaches the cells as ``$FOCALBENCH_DATA``: worker
    processes and a local Ray instance inherit the driver's environment, and the Ray executor
    forwards the variable to the workers of a remote cluster.

    ``train_fn`` replaces :func:`focalbench.engine.train` inside each cell (tests of the
    executors); it must be importable by the worker processes. Returns the grid's cells with
    their outcomes; the same is in ``<results>/grids/<name>/grid.json``.
    """
    if data_dir is not None:  # before plan: a study reads an imported dataset's settings there
        os.environ["FOCALBENCH_DATA"] = str(Path(data_dir).resolve())
    grid = plan(dataset, attention=attention, study=study, models=models, losses=losses, seeds=seeds,
                folds=folds, protocol=protocol, epochs=epochs, params=params, name=name)
    if not threshold >= 0.0:  # found now, not when the first source run has finished
        raise FocalbenchError(f"--threshold {threshold} must be ≥ 0 (the paper uses 0.2)")
    results_dir = ensure_writable_dir(results_root(results))
    gpu_list = _ints(gpus, "--gpus")
    kind = ExecutorKind(executor)
    if jobs is None:  # on CPU, what the cores allow (focalbench.threads); one GPU cell otherwise
        jobs = threads.default_jobs(threads.cpu_cores(), len(grid.cells)) if _on_cpu(device) else 1
    if kind is ExecutorKind.local:
        runner: LocalExecutor | RayExecutor = LocalExecutor(local_slots(device, gpu_list, jobs_per_gpu, jobs))
    else:
        runner = RayExecutor(ray_address, use_gpus=bool(gpu_list), jobs_per_gpu=jobs_per_gpu, device=device)
    grid_dir = results_dir / "grids" / grid.name
    started = time.perf_counter()
    runner.start()  # workers come up while the driver checks the names below
    try:
        if train_fn is None:  # a stand-in train (tests) decides itself what names mean
            check_names(grid)
        _write_grid(grid_dir, grid, threshold)
        _drive(grid, runner, str(results_dir), retry_failed, threshold, train_fn, grid_dir, progress)
    finally:
        runner.close()
    _write_grid(grid_dir, grid, threshold)
    return GridResult(grid.name, grid_dir, grid.cells, time.perf_counter() - started)


def check_names(grid: GridPlan) -> None:
    """Refuse unknown protocols, networks, loss specs and unprepared datasets before any cell runs.

    Otherwise one typo in ``--models`` (or a forgotten ``fetch``) would leave a failed run folder
    per cell. Networks are
    checked by name only (building full-width ones costs seconds); losses are built, which also
    checks ``loss.KEY`` parameters.
    """
    from focalbench.datasets.prepared import fetch_hint, read_meta
    from focalbench.losses import build_loss
    from focalbench.models import MODELS
    from focalbench.protocols import get_protocol

    configs = [c.config for c in grid.cells if c.config is not None]
    for dataset in sorted({c.dataset for c in configs}):
        if read_meta(dataset) is None:
            raise FocalbenchError(f"dataset {dataset!r} is not prepared; run: {fetch_hint(dataset)}")
    for protocol in sorted({c.protocol for c in configs}):
        get_protocol(protocol)
    for model in sorted({c.model for c in configs}):
        MODELS.get(model)
    for loss, params in {(c.loss, json.dumps(c.loss_params, sort_keys=True)) for c in configs}:
        build_loss(loss, **json.loads(params))


def _write_grid(grid_dir: Path, grid: GridPlan, threshold: float) -> None:
    path = grid_dir / "grid.json"
    created = read_json(path).get("created") if path.exists() else utc_now()
    atomic_write_json(path, {
        "name": grid.name, "study": grid.study, "table": grid.table, "prune_threshold": threshold,
        "created": created, "updated": utc_now(), "cells": [c.to_dict() for c in grid.cells],
    })


def _drive(grid: GridPlan, runner: LocalExecutor | RayExecutor, results: str, retry_failed: bool,
           threshold: float, train_fn: TrainFn | None, grid_dir: Path, progress: bool) -> None:
    """Feed ready cells to the executor; derive pruned cells as their sources finish."""
    from focalbench.engine.progress import PlainGridLog, output_is_terminal
    from focalbench.prune import decide, record

    cells = grid.cells
    ready = [i for i, c in enumerate(cells) if c.config is not None]
    dependents: dict[int, list[int]] = {}
    for i, c in enumerate(cells):
        if c.source is not None:
            dependents.setdefault(c.source, []).append(i)
    in_flight: set[int] = set()
    durations: list[float] = []
    # a log file or CI cannot redraw a live display: plain lines there (engine.progress)
    display = (GridProgress if output_is_terminal() else PlainGridLog)(grid, results, runner.capacity) if progress else None
    try:
        while ready or in_flight:
            while ready and runner.free > 0:
                i = ready.pop(0)
                runner.submit(CellTask(i, cells[i].config.to_dict(), results, retry_failed, train_fn))
                in_flight.add(i)
            if display:
                display.update(in_flight, runner.running(), eta_seconds(durations, len(ready) + len(in_flight), runner.capacity))
            for i, result in runner.poll(0.25):
                in_flight.discard(i)
                cells[i].result = result
                if result.outcome in (Outcome.trained, Outcome.resumed):
                    durations.append(result.seconds)
                for j in dependents.pop(i, []):
                    if cells[j].config is not None:  # a pruned cell that is this very cell
                        ready.append(j)
                    elif result.done:
                        try:
                            decision = decide(run_dir_of(results, result.key), threshold)
                            record(decision, results)
                        except FocalbenchError as exc:
                            cells[j].result = CellResult("", Outcome.failed, error=f"pruning failed: {exc}")
                            continue
                        cells[j].config, cells[j].note = decision.config, decision.note
                        cells[j].pruned_from = decision.source
                        ready.append(j)
                    else:
                        cells[j].result = CellResult(
                            "", Outcome.blocked,
                            error=f"source cell {result.key} is {result.outcome.value}: {result.error}")
                _write_grid(grid_dir, grid, threshold)
                if display:
                    display.advance(cells[i])
                    display.update(in_flight, runner.running(),
                                   eta_seconds(durations, len(ready) + len(in_flight), runner.capacity), force=True)
    finally:
        if display:
            display.stop()


class GridProgress:
    """One overall bar (cells finished, ETA from the trained cells' times) and a line per running cell.

    A running cell's epoch comes from its own ``status.json`` and ``config.json`` on disk, so the
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

    def advance(self, cell: Cell) -> None:
        """Print one line for a finished cell above the live display."""
        result = cell.result
        mark = {"trained": "✓", "resumed": "✓", "skipped": "·", "failed": "✗", "busy": "…", "blocked": "…"}
        fold = "" if cell.fold is None else f" · fold {cell.fold}"
        extra = f" — {result.error}" if result.error else ""
        line = (f"{mark[result.outcome.value]} {cell.row} · {cell.dataset} · seed {cell.seed}{fold}: "
                f"{result.outcome.value} ({result.seconds:.0f}s){extra}")
        self.live.console.print(line, highlight=False, markup=False)

    def update(self, in_flight: set[int], devices: dict[int, str], eta: float | None, force: bool = False) -> None:
        from rich.console import Group
        from rich.text import Text

        now = time.monotonic()
        if now - self._last < 0.5 and not force:  # the epoch lines read files: twice a second is enough
            return
        self._last = now
        done = sum(1 for c in self.grid.cells if c.result)
        total = len(self.grid.cells)
        width = 30
        filled = int(width * done / total) if total else width
        eta_text = "ETA —" if eta is None else f"ETA {_fmt_seconds(eta)}"
        lines = [Text(f"{self.grid.name}  [{'█' * filled}{'░' * (width - filled)}] {done}/{total} cells  {eta_text}")]
        for i in sorted(in_flight):
            cell = self.grid.cells[i]
            lines.append(Text(f"  ⟳ {cell.row} · {cell.dataset} · seed {cell.seed} "
                              f"[{devices.get(i, 'queued')}] {_epoch_text(self.results, cell)}"))
        self.live.update(Group(*lines))

    def stop(self) -> None:
        self.live.stop()


def _epoch_text(results: str, cell: Cell) -> str:
    run_dir = run_dir_of(results, cell.config.key)
    status = read_status(run_dir) or {}
    try:
        total = read_json(run_dir / "config.json").get("resolved", {}).get("epochs")
    except (FileNotFoundError, json.JSONDecodeError):
        total = None
    epoch = status.get("epoch")
    if epoch is None:
        return "starting"
    return f"epoch {epoch}/{total}" if total else f"epoch {epoch}"


def _fmt_seconds(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
