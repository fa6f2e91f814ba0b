"""The papers' published numbers (``published.json``) and their comparison with our entries."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from focalbench.report.runs import Entry, loss_family

#: Published column → (our metric, factor from the published unit to ours).
_UNITS = {"params_millions": ("params", 1e6)}


@functools.cache
def published() -> dict[str, Any]:
    """Every table of the four papers, as transcribed (see the file's ``about`` and ``missing``)."""
    return json.loads(
        resources.files("focalbench.report").joinpath("published.json").read_text(encoding="utf-8")
    )


def footnotes(paper: str) -> list[str]:
    """What a paper's printed columns measure, where that is not what the column name says."""
    return [
        f"Paper {t['paper']} {t['table']}: {t['footnote']}"
        for t in published()["tables"]
        if t["paper"] == paper and t.get("footnote")
    ]


@dataclass(frozen=True)
class Comparison:
    paper: str
    table: str
    label: str  # the paper's row
    entry: Entry
    metric: str  # our metric name
    ours: float
    ours_std: float
    n: int
    theirs: float
    theirs_std: float | None

    @property
    def difference(self) -> float:
        return self.ours - self.theirs


def our_metric(column: str) -> tuple[str, float]:
    """A published column → (our metric, factor from the published unit to ours)."""
    return _UNITS.get(column, (column, 1.0))


def row_matches(row: dict[str, Any], entry: Entry) -> bool:
    """The entry trains what the published row reports (model, loss family, pruned), on any dataset.
    A zero-initialised Focal network (w₀ = 0) is the pruning step's probe: no paper row reports it."""
    if row.get("model") != entry.model or entry.model_params.get("focal_init") == 0:
        return False
    if bool(row.get("pruned", False)) != entry.pruned:
        return False
    losses = row.get("loss")
    if losses is None:
        return True
    wanted = [losses] if isinstance(losses, str) else losses
    return entry.family in {loss_family(w) for w in wanted}


def _matches(row: dict[str, Any], entry: Entry) -> bool:
    return row.get("dataset") == entry.dataset and row_matches(row, entry)


def compare(entries: list[Entry]) -> list[Comparison]:
    """Ours, theirs and the difference for every (paper cell, entry) pair where both have a number.

    Our number is the entry's mean over runs of the per-image mean (as in our table); the paper's
    is as printed (paper 003: the mean of its mean ± std over folds).
    """
    out: list[Comparison] = []
    for table in published()["tables"]:
        for row in table["rows"]:
            for entry in entries:
                if not _matches(row, entry):
                    continue
                for column, raw in zip(table["columns"], row["values"], strict=False):
                    metric, factor = our_metric(column)
                    theirs, theirs_std = published_value(raw)
                    ours = entry.values(metric)
                    if theirs is None or ours.size == 0:
                        continue
                    out.append(
                        Comparison(
                            table["paper"],
                            table["table"],
                            row["label"],
                            entry,
                            metric,
                            float(ours.mean()),
                            _std(ours),
                            int(ours.size),
                            theirs * factor,
                            None if theirs_std is None else theirs_std * factor,
                        )
                    )
    return out


def published_value(raw: Any) -> tuple[float | None, float | None]:
    if isinstance(raw, dict):
        return float(raw["mean"]), float(raw["std"])
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw), None
    return None, None


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")
