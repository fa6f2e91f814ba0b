"""The planner: a study × options → the grid's cells. Pure: it reads and writes no folder.

A grid is every row × dataset × seed × fold of a study, each a
:class:`~focalbench.config.RunConfig` whose run folder ``results/runs/<key>/`` is found again on
rerun. The pruned rows are *derived*: their config exists only once the zero-initialised Focal
network of the same dataset/seed/fold has finished, so they are planned with ``config=None``
and filled in by the driver the moment their source is done.

The grid's name (its folder under ``results/grids/``) is the study, datasets and protocol plus a
digest of every cell's config, so the same command finds the same grid; ``--fold 0`` plans a
grid of its own whose cells share their run folders with the full study's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from focalbench.config import RunConfig, split_params
from focalbench.errors import FocalbenchError
from focalbench.grammar import parse_ints, split_loss_list, split_names
from focalbench.grid.studies import (
    STUDIES,
    AttentionStudy,
    Study,
    StudyName,
    TableSpec,
    custom_study,
)
from focalbench.options import RunOptions
from focalbench.run_state import CellResult


@dataclass
class GridCell:
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
            "row": self.row,
            "dataset": self.dataset,
            "seed": self.seed,
            "fold": self.fold,
            "key": self.config.key if self.config else None,
            "config": self.config.to_dict() if self.config else None,
        }
        if self.source is not None:
            out.update(pruned_from=self.pruned_from, note=self.note)
        if self.result:
            out.update(
                outcome=self.result.outcome.value,
                error=self.result.error,
                seconds=round(self.result.seconds, 3),
            )
        return out


@dataclass
class GridPlan:
    name: str
    study: str
    table: TableSpec
    cells: list[GridCell]


def choose_study(
    attention: AttentionStudy | str | None = None,
    study: StudyName | str | None = None,
    models: str | Sequence[str] | None = None,
    losses: str | Sequence[str] | None = None,
    study_file: str | os.PathLike | None = None,
) -> Study:
    """The one study the flags name: ``--attention``, ``--study``, ``--study-file`` or
    ``--models × --losses``."""
    chosen = [
        flag
        for flag, value in (
            ("--attention", attention),
            ("--study", study),
            ("--study-file", study_file),
            ("--models/--losses", models or losses),
        )
        if value
    ]
    if len(chosen) != 1:
        raise FocalbenchError(
            "pick one grid: --attention se|ag, --study losses|focal-tversky|focusnet, "
            "--study-file FILE.toml, or --models a,b --losses x,y"
            + (f" (got {' and '.join(chosen)})" if chosen else "")
        )
    if study_file:
        from focalbench.grid.study_file import load_study

        return load_study(study_file)
    if attention:
        return STUDIES.get(f"attention-{AttentionStudy(attention).value}")
    if study:
        return STUDIES.get(StudyName(study).value)
    model_list, loss_list = split_names(models), split_loss_list(losses)
    if not model_list or not loss_list:
        raise FocalbenchError("the general form needs both --models a,b and --losses x,y")
    return custom_study(model_list, loss_list)


def plan(
    dataset: str | Sequence[str] | None,
    *,
    attention: AttentionStudy | str | None = None,
    study: StudyName | str | None = None,
    models: str | Sequence[str] | None = None,
    losses: str | Sequence[str] | None = None,
    study_file: str | os.PathLike | None = None,
    seeds: str | Sequence[int] | None = None,
    folds: int | None = None,
    fold: str | int | Sequence[int] | None = None,
    name: str | None = None,
    options: RunOptions | None = None,
    **option_fields: Any,
) -> GridPlan:
    """Expand a study (or ``models × losses``) into cells: rows × datasets × seeds × folds.

    ``folds=K`` trains folds 0..K-1 of the dataset's split (``None``: the study's default, which
    is no fold split except paper 003's 5); ``fold`` keeps only the listed ones (``"0,2"``).
    ``options`` (or its fields as keywords: ``protocol``, ``epochs``, ``params``) apply to every
    cell.
    """
    opts = RunOptions.of(options, **option_fields)
    chosen = choose_study(attention, study, models, losses, study_file)
    datasets = split_names(dataset) or list(chosen.default_datasets)
    if not datasets:
        raise FocalbenchError("name the dataset(s): --dataset drive (or --dataset drive,dsb2018)")
    protocol = opts.protocol or chosen.protocol
    fold_list = _folds(folds if folds is not None else chosen.folds, fold, folds is not None)
    seed_list = parse_ints(seeds, "--seeds") or list(chosen.seeds) or [0]
    model_params, loss_params, overrides = split_params(list(opts.params))

    cells: list[GridCell] = []
    for ds in datasets:
        rows = chosen.rows(ds)
        for seed in seed_list:
            for fold_index in fold_list:
                index_of: dict[str, int] = {}
                for row in rows:
                    index_of[row.label] = len(cells)
                    if row.pruned_from is not None:
                        cells.append(
                            GridCell(
                                row.label,
                                ds,
                                seed,
                                fold_index,
                                None,
                                source=index_of[row.pruned_from],
                            )
                        )
                        continue
                    config = RunConfig(
                        dataset=ds,
                        model=row.model,
                        loss=row.loss,
                        protocol=protocol,
                        seed=seed,
                        fold=fold_index,
                        epochs=opts.epochs,
                        model_params={**row.model_params, **model_params},
                        loss_params={**row.loss_params, **loss_params},
                        overrides={**row.overrides, **overrides},
                    )
                    cells.append(GridCell(row.label, ds, seed, fold_index, config))
    if name is None:
        fingerprint = json.dumps(
            [c.config.to_dict() if c.config else c.source for c in cells], sort_keys=True
        )
        digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:8]
        name = f"{chosen.name}-{'+'.join(datasets)}-{protocol}-{digest}"
    return GridPlan(name, chosen.name, chosen.table, cells)


def _folds(
    n_folds: int | None, only: str | int | Sequence[int] | None, explicit: bool
) -> list[int | None]:
    """Fold indices to train: all ``n_folds`` of a k-fold study, or the ``--fold`` subset."""
    if explicit and (n_folds is None or n_folds < 2):
        raise FocalbenchError("--folds K needs K ≥ 2 (or leave it out for the fixed split)")
    chosen = parse_ints(only, "--fold") if only is not None else []
    if not chosen:
        return list(range(n_folds)) if n_folds else [None]
    if not n_folds:
        raise FocalbenchError(
            "--fold picks folds of a k-fold study; this one has a fixed split "
            "(add --folds K, or drop --fold)"
        )
    wrong = [f for f in chosen if not 0 <= f < n_folds]
    if wrong:
        raise FocalbenchError(f"--fold {wrong[0]}: the study has folds 0…{n_folds - 1}")
    return sorted(set(chosen))
