"""The focal-weight pruning heuristic of paper 000 (§2.2, Fig. 4, Tables 3–4).

A Focal attention module scales its attention weights as ``a' = clip(a, 1e-7, 1) ** w`` with one
trainable ``w ≥ 0`` per module. Trained from ``w₀ = 0`` (the plain U-Net function), the modules
that matter grow their weight. The rule: keep module k iff its weight at convergence
``w_k > τ`` (τ = 0.2 in the paper), remove the others entirely, and retrain the pruned network
from scratch. "At convergence" is read as the weight after the last finished epoch, the last row
of the run's ``history.csv`` (columns ``focal_se1``…``focal_se9`` / ``focal_ag1``…``focal_ag4``).

The paper does not say how the kept modules' weights start in the retraining; we use ``w₀ = 1``
(the paper's standard Focal-module initialisation, models spec §4). Removing every module gives
the plain ``unet`` (the paper's DRIVE + attention-gate case). The pruned config carries
``pruned_from`` = the source run's key, so every pruned network — the plain U-Net one included —
is its own cell, retrained as the paper's pruned column; the decision (τ, every weight, kept
positions) is also written to ``pruned.json`` in the pruned run's folder.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError
from focalbench.run_state import RunFolder, Status, run_folder

DEFAULT_THRESHOLD = 0.2
# model_params that only exist for attention networks; the plain U-Net refuses them.
_ATTENTION_PARAMS = ("positions", "focal_init")
_COLUMN = re.compile(r"focal_([a-z]+)(\d+)")


@dataclass(frozen=True)
class FocalWeight:
    kind: str  # "se" or "ag"
    position: int  # 1-based position in the network (models spec §2–3)
    weight: float  # w after the last finished epoch
    kept: bool

    @property
    def name(self) -> str:
        return f"{self.kind}{self.position}"


def keep(weights: dict[str, float], threshold: float = DEFAULT_THRESHOLD) -> list[FocalWeight]:
    """Apply the rule ``kept ⇔ w > threshold`` to ``{"se1": w, ...}``; the result is in position order."""
    out = []
    for name, weight in weights.items():
        match = re.fullmatch(r"([a-z]+)(\d+)", name)
        if not match:
            raise ValueError(f"focal weight name {name!r} is not <kind><position>")
        out.append(
            FocalWeight(
                match.group(1), int(match.group(2)), float(weight), float(weight) > threshold
            )
        )
    return sorted(out, key=lambda w: w.position)


def final_focal_weights(run_dir: str | os.PathLike) -> dict[str, float]:
    """The focal weights of the last finished epoch in ``history.csv``: ``{"se1": w, ...}``."""
    path = RunFolder(Path(run_dir)).history_csv
    if not path.exists():
        raise FocalbenchError(
            f"{path} does not exist; prune needs a finished run folder (results/runs/<key>)"
        )
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise FocalbenchError(
            f"{path} has no finished epoch; finish the run first (rerun its train/ablate command)"
        )
    weights = {
        m.group(1) + m.group(2): float(value)
        for column, value in rows[-1].items()
        if column and (m := _COLUMN.fullmatch(column))
    }
    if not weights:
        raise FocalbenchError(
            f"run {Path(run_dir).name} has no focal weights in history.csv; prune a focal-use-net or "
            "focal-attention-unet run (trained with --param model.focal_init=0)"
        )
    return weights


@dataclass(frozen=True)
class Decision:
    """The outcome of the rule on one source run: the retraining config and why."""

    source: str  # key of the zero-initialised run
    threshold: float
    weights: list[FocalWeight]
    config: RunConfig

    @property
    def kept(self) -> list[int]:
        return [w.position for w in self.weights if w.kept]

    @property
    def note(self) -> str:
        if not self.kept:
            return f"no module above τ = {self.threshold:g}: plain U-Net"
        names = ", ".join(w.name for w in self.weights if w.kept)
        return f"kept {names} of {len(self.weights)} at τ = {self.threshold:g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "pruned_from": self.source,
            "threshold": self.threshold,
            "weights": [
                {
                    "position": w.position,
                    "type": w.kind,
                    "name": w.name,
                    "weight": w.weight,
                    "kept": w.kept,
                }
                for w in self.weights
            ],
            "kept": self.kept,
            "note": self.note,
            "config": self.config.to_dict(),
            "key": self.config.key,
        }


def decide(run_dir: str | os.PathLike, threshold: float = DEFAULT_THRESHOLD) -> Decision:
    """Apply the rule to a finished Focal run and build the retraining config.

    Kept positions go to ``model_params["positions"]`` with ``focal_init = 1``; no kept module
    gives ``model="unet"`` without attention parameters. Everything else (dataset, loss,
    protocol, seed, fold, epochs, other params) is the source's.
    """
    if not threshold >= 0.0:
        raise FocalbenchError(f"--threshold {threshold} must be ≥ 0 (the paper uses 0.2)")
    run_dir = Path(run_dir)
    source = _source_config(run_dir)
    weights = keep(final_focal_weights(run_dir), threshold)
    kept = [w.position for w in weights if w.kept]
    params = {k: v for k, v in source.model_params.items() if k not in _ATTENTION_PARAMS}
    if kept:
        config = source.replace(
            model_params={**params, "positions": kept, "focal_init": 1.0}, pruned_from=source.key
        )
    else:
        config = source.replace(model="unet", model_params=params, pruned_from=source.key)
    return Decision(source.key, threshold, weights, config)


def record(decision: Decision, results: str | os.PathLike) -> Path:
    """Write ``pruned.json`` (the decision) into the pruned run's folder; return its path."""
    folder = run_folder(results, decision.config.key)
    folder.write_pruned(decision.to_dict())
    return folder.pruned_json


def _source_config(run_dir: Path) -> RunConfig:
    folder = RunFolder(run_dir)
    try:
        stored = folder.config()
    except FileNotFoundError:
        raise FocalbenchError(
            f"{run_dir} has no config.json; pass a run folder, e.g. results/runs/<key>"
        ) from None
    record = folder.status()
    status = record.state.value if record else None
    if status != Status.done.value:
        raise FocalbenchError(
            f"run {run_dir.name} is {status or 'not started'}, not done; finish it first "
            "(rerun the same focalbench train/ablate command)"
        )
    return RunConfig.from_dict(stored["config"])


def prune(
    run_dir: str | os.PathLike,
    threshold: float = DEFAULT_THRESHOLD,
    retrain: bool = False,
    results: str | os.PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
    data_dir: str | os.PathLike | None = None,
    log: tuple[str, ...] | list[str] = (),
    mlflow_uri: str | None = None,
) -> dict[str, Any]:
    """Prune a finished zero-initialised Focal run at ``threshold``; optionally retrain the result
    (mirrored into the trackers ``log``, as ``train``'s).

    Returns :meth:`Decision.to_dict` (``pruned_from``, ``threshold``, ``weights``: position,
    type, name, weight, kept; ``kept``, ``note``, ``config``, ``key``) plus ``run``: train's
    summary when ``retrain``, else ``None``. ``results`` defaults to the folder holding
    ``run_dir`` (``<results>/runs/<key>``); ``pruned.json`` is written into the pruned run's folder
    once the retraining returns. Without ``retrain`` nothing is written: a folder holding only
    ``pruned.json`` would be a half-made run that ``report`` skips as unreadable.
    """
    from focalbench.options import RunOptions

    run_dir = Path(run_dir)
    options = RunOptions.of(device=device, log=log, mlflow_uri=mlflow_uri)
    if options.log and not retrain:
        raise FocalbenchError("--log mirrors the retraining; add --retrain or drop --log")
    decision = decide(run_dir, threshold)
    if retrain:  # every input checked before the pruned run's folder exists
        from focalbench.checks import check_config

        options.check()
        check_config(decision.config, None if data_dir is None else str(data_dir))
    results = Path(results) if results is not None else run_dir.parent.parent
    summary = None
    if retrain:
        from focalbench.engine import train

        summary = train(
            decision.config,
            results=results,
            device=device,
            resume=True,
            progress=progress,
            data_dir=data_dir,
            check=False,  # checked above, before any folder
            **options.tracking,
        )
        record(decision, results)
    return {**decision.to_dict(), "run": summary}
