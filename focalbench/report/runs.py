"""Read run folders tolerantly and group them into entries (one configuration, many seeds/folds).

A run folder (``results/runs/<key>/``, see ``docs/architecture.md``) is read through
:class:`focalbench.run_state.RunFolder`: its config, status record, per-image scores and metrics. A folder that cannot be
read is *skipped and named* (:class:`Skipped`), never fatal: one torn folder must not hide a
whole study.

An :class:`Entry` is every run that shares a configuration except ``seed`` and ``fold``; it is
the unit a table cell aggregates. Pruned runs (``model_params.positions`` shorter than the full
set, or ``pruned_from`` set in the config) of one model × loss × dataset form one entry whatever positions
each seed kept: the configuration is the procedure "train, prune at 0.2, retrain".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported where a table is read: the CLI starts without it
    import pandas as pd

from focalbench.errors import FocalbenchError
from focalbench.grammar import parse_loss_spec
from focalbench.run_state import RunFolder, Status, runs_dir

#: Metrics stored per test image in ``per_image.csv``.
IMAGE_METRICS = (
    "dsc",
    "precision",
    "recall",
    "jaccard",
    "accuracy",
    "sensitivity",
    "specificity",
    "hd95",
)
#: Metrics stored once per run in ``metrics.json``.
RUN_METRICS = ("params", "gflops")

#: Attention positions of the full networks (models spec §2–§4): 9 SE blocks, 4 attention gates.
FULL_POSITIONS = {"use-net": 9, "focal-use-net": 9, "attention-unet": 4, "focal-attention-unet": 4}


@dataclass
class StoredRun:
    """A run folder as the report reads it."""

    path: Path
    config: dict[str, Any]
    state: Status
    error: str | None = None
    per_image: pd.DataFrame | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)
    version: str | None = None

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def pruned(self) -> bool:
        return is_pruned(self.config)

    @property
    def modules(self) -> int:
        """Number of attention modules the network holds (#SE / #AG of paper 000 Tables 3–4)."""
        positions = self.config.get("model_params", {}).get("positions")
        if positions is not None:
            return len(positions)
        return FULL_POSITIONS.get(self.config["model"], 0)

    def value(self, metric: str) -> float:
        """The run's score: the mean over test images (NaN images left out), or a run-level number."""
        if metric in RUN_METRICS:
            raw = self.metrics.get(metric)
            return float("nan") if raw is None else float(raw)
        if metric == "modules":
            return float(self.modules)
        if self.per_image is None or metric not in self.per_image:
            return float("nan")
        column = self.per_image[metric].to_numpy(dtype=float)
        return float(np.nanmean(column)) if np.isfinite(column).any() else float("nan")


@dataclass
class Skipped:
    path: Path
    reason: str


def is_pruned(config: dict[str, Any]) -> bool:
    params = config.get("model_params") or {}
    if config.get("pruned_from"):
        return True
    positions = params.get("positions")
    full = FULL_POSITIONS.get(config.get("model", ""))
    return positions is not None and full is not None and len(positions) < full


def load_runs(results: Path) -> tuple[list[StoredRun], list[Skipped]]:
    """Every run folder under ``results/runs`` (sorted by name), and the folders that were skipped."""
    folder = runs_dir(results)
    runs: list[StoredRun] = []
    skipped: list[Skipped] = []
    if not folder.is_dir():
        return runs, skipped
    for path in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            runs.append(read_run(path))
        except _Corrupt as exc:
            skipped.append(Skipped(path, str(exc)))
    return runs, skipped


class _Corrupt(Exception):
    """A run folder that cannot be read; the report names it and goes on."""


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise _Corrupt(f"{path.name} missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Corrupt(f"{path.name} unreadable ({type(exc).__name__})") from None


def read_run(path: Path) -> StoredRun:
    folder = RunFolder(path)
    raw = _read_json(folder.config_json)
    config = raw.get("config") if isinstance(raw, dict) else None
    if not isinstance(config, dict) or not all(
        isinstance(config.get(k), str) for k in ("dataset", "model", "loss")
    ):
        raise _Corrupt("config.json has no config with dataset, model and loss")
    try:
        record = folder.status()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Corrupt(f"{folder.status_json.name} unreadable ({type(exc).__name__})") from None
    except ValueError as exc:
        raise _Corrupt(
            f"{folder.status_json.name}: {exc}; expected state running, done or failed"
        ) from None
    if record is None:
        raise _Corrupt(f"{folder.status_json.name} missing")
    run = StoredRun(
        path=path,
        config=config,
        state=record.state,
        error=record.error,
        resolved=raw.get("resolved") or {},
        version=raw.get("version"),
    )
    if record.state is Status.done:
        run.per_image = _read_per_image(folder.per_image_csv)
        metrics = folder.metrics_json
        run.metrics = _read_json(metrics) if metrics.exists() else {}
        if not isinstance(run.metrics, dict):
            raise _Corrupt("metrics.json is not an object")
    return run


def _read_per_image(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise _Corrupt("state is done but per_image.csv is missing")
    try:
        frame = pd.read_csv(path, dtype={"image_id": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise _Corrupt(f"per_image.csv unreadable ({type(exc).__name__})") from None
    if "image_id" not in frame or "dsc" not in frame or frame.empty:
        raise _Corrupt("per_image.csv has no image_id/dsc rows")
    if frame["image_id"].duplicated().any():
        raise _Corrupt("per_image.csv repeats an image_id")
    return frame


# ----------------------------------------------------------------------------------------------
# loss specs

#: Spellings that name the same sum of terms.
_ALIASES = {"dice_ce": ("dice", "ce"), "dsc": ("dice",), "dl": ("dice",)}


def parse_loss(spec: str) -> list[tuple[str, dict[str, Any]]]:
    """``"ufl(gamma=0.1)+fdpt(eps=0.1)"`` → ``[("ufl", {"gamma": 0.1}), ("fdpt", {"eps": 0.1})]``.

    Read by the one grammar (:func:`focalbench.grammar.parse_loss_spec`), then normalised the
    way paper 000 §2.2 reads the FDPT: ε = 1 is the DPT, ε = 0 is no term at all; ``dice_ce``
    is ``dice + ce``. A spec the grammar cannot read (a folder written by hand) stays one
    opaque term, so the report still shows it.
    """
    try:
        parsed = parse_loss_spec(spec)
    except FocalbenchError:
        return [(spec.strip().lower(), {})]
    terms: list[tuple[str, dict[str, Any]]] = []
    for name, params in parsed:
        name = name.lower()
        if name == "fdpt" and params.get("eps") == 1:
            name, params = "dpt", {k: v for k, v in params.items() if k != "eps"}
        if name == "fdpt" and params.get("eps") == 0:
            continue
        terms.extend((alias, dict(params)) for alias in _ALIASES.get(name, (name,)))
    return terms


def format_loss(
    terms: list[tuple[str, dict[str, Any]]], keep: tuple[str, ...] | None = None
) -> str:
    """Write terms back as a spec; ``keep`` limits the shown parameters (``None`` = all)."""
    out = []
    for name, params in terms:
        shown = {k: v for k, v in sorted(params.items()) if keep is None or k in keep}
        args = ",".join(f"{k}={_num(v)}" for k, v in shown.items())
        out.append(f"{name}({args})" if args else name)
    return "+".join(out)


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def loss_family(spec: str) -> str:
    """The loss without dataset-tuned parameters: UFL's γ is set per dataset (paper 000 Table 1),
    so ``ufl(gamma=0.1)+fdpt(eps=0.1)`` and ``ufl(gamma=0.3)+fdpt(eps=0.1)`` fill the same column."""
    return format_loss(parse_loss(spec), keep=("eps",))


# ----------------------------------------------------------------------------------------------
# entries


@dataclass
class Entry:
    """All runs of one configuration (everything but seed and fold)."""

    dataset: str
    protocol: str
    model: str
    loss: str
    pruned: bool
    params: str  # the remaining configuration (model/loss params, overrides) as short text
    model_params: dict[str, Any] = field(default_factory=dict)  # without a pruned run's positions
    runs: list[StoredRun] = field(default_factory=list)

    @property
    def done(self) -> list[StoredRun]:
        return [r for r in self.runs if r.state is Status.done]

    @property
    def pending(self) -> list[StoredRun]:
        return [r for r in self.runs if r.state is not Status.done]

    @property
    def family(self) -> str:
        return loss_family(self.loss)

    @property
    def name(self) -> str:
        """``model:loss`` plus ``(pruned)``: how ``--baseline`` and footnotes name the entry."""
        return f"{self.model}:{self.loss}" + (" (pruned)" if self.pruned else "")

    def values(self, metric: str) -> np.ndarray:
        """One score per finished run (NaN runs dropped)."""
        scores = np.array([r.value(metric) for r in self.done], dtype=float)
        return scores[np.isfinite(scores)]

    def per_image(self, metric: str) -> pd.Series:
        """Per-image scores keyed by ``image_id``, averaged over every run that tested the image.

        ``kfold-K`` folds hold different test images, so they concatenate; seeds, and the folds
        of ``holdout-P-kfold-K``, repeat the same images, so they average — every test image
        then counts once in tests and bootstrap intervals.
        """
        import pandas as pd

        pieces = []
        for run in self.done:
            if run.per_image is None or metric not in run.per_image:
                continue
            index = run.per_image["image_id"].astype(str).to_numpy()
            pieces.append(pd.Series(run.per_image[metric].to_numpy(dtype=float), index=index))
        if not pieces:
            return pd.Series(dtype=float)
        joined = pd.concat(pieces)
        return joined.groupby(level=0, sort=True).mean().dropna()


def group_entries(runs: list[StoredRun]) -> list[Entry]:
    """Group runs into entries, in a stable order (dataset, model, loss, variant)."""
    groups: dict[tuple, Entry] = {}
    for run in runs:
        c = run.config
        pruned = run.pruned
        model_params = {
            k: v
            for k, v in (c.get("model_params") or {}).items()
            if not (pruned and k == "positions")
        }
        rest = {
            "model": model_params,
            "loss": c.get("loss_params") or {},
            "overrides": c.get("overrides") or {},
        }
        if c.get("epochs") is not None:
            rest["epochs"] = c["epochs"]
        params = _short_params(rest)
        loss = format_loss(parse_loss(c["loss"]))
        key = (c["dataset"], c.get("protocol", ""), c["model"], loss, pruned, params)
        if key not in groups:
            groups[key] = Entry(
                c["dataset"], c.get("protocol", ""), c["model"], loss, pruned, params, model_params
            )
        groups[key].runs.append(run)
    return [groups[k] for k in sorted(groups, key=lambda k: tuple(str(x) for x in k))]


def _short_params(rest: dict[str, Any]) -> str:
    flat = []
    for scope, values in rest.items():
        if isinstance(values, dict):
            flat += [
                f"{scope}.{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(values.items())
            ]
        else:
            flat.append(f"{scope}={values}")
    return " ".join(flat)
