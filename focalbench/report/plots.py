"""PNG figures of a report (matplotlib, Agg backend, no display needed).

* ``focal-<run>.png`` — Focal layer weights over epochs per attention position, the 0.2 pruning
  threshold and the kept modules in green (paper 000 Fig. 4);
* ``curves-<run>.png`` — training and validation loss and validation DSC per epoch;
* ``samples-<dataset>.png`` — image | ground truth | each model's prediction, from the runs'
  ``test_samples.npz`` (papers 001–002 Figs. 2–4);
* ``fdpt-weights.png`` — the FDPT weight map W = (1 + D)^ε for ε = 0.1, 1, 10 on one mask
  (paper 000 Fig. 1), D from :func:`focalbench.losses.boundary.distance_map`.
"""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from focalbench.report.layouts import DATASET_NAMES, Table
from focalbench.report.runs import Entry, StoredRun
from focalbench.store import atomic_write_bytes

#: Paper 000 §2.1: a module whose Focal weight converges below 0.2 is removed.
PRUNE_THRESHOLD = 0.2
FDPT_EPSILONS = (0.1, 1.0, 10.0)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _history(run: StoredRun) -> pd.DataFrame | None:
    path = run.path / "history.csv"
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    return frame if "epoch" in frame and not frame.empty else None


def _label(entry: Entry) -> str:
    """The entry's name with the configuration that tells it apart (e.g. ``focal_init=0``)."""
    return f"{entry.name} [{entry.params}]" if entry.params else entry.name


def _title(entry: Entry, run: StoredRun) -> str:
    extra = f" fold {run.config['fold']}" if run.config.get("fold") is not None else ""
    return f"{DATASET_NAMES.get(entry.dataset, entry.dataset)} · {_label(entry)} · seed {run.config.get('seed', 0)}{extra}"


def focal_weights_plot(entry: Entry, run: StoredRun, history: pd.DataFrame, path: Path) -> Path | None:
    columns = [c for c in history.columns if c.startswith("focal_")]
    if not columns:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colours = plt.get_cmap("tab10")
    for i, column in enumerate(columns):
        final = float(history[column].iloc[-1])
        kept = final >= PRUNE_THRESHOLD
        position = column.removeprefix("focal_")
        # kept modules solid and thick, removed ones thin and dotted: the pruning decision at a glance
        ax.plot(history["epoch"], history[column], color=colours(i % 10), linestyle="-" if kept else ":",
                linewidth=2.2 if kept else 1.0, label=f"{position}: W = {final:.2f}{' (kept)' if kept else ''}")
        ax.annotate(position, (history["epoch"].iloc[-1], final), textcoords="offset points", xytext=(3, 0),
                    fontsize=7, va="center", color="tab:green" if kept else "0.4")
    ax.axhspan(PRUNE_THRESHOLD, max(1.0, float(history[columns].max().max())) * 1.05, color="tab:green", alpha=0.07)
    ax.axhline(PRUNE_THRESHOLD, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {PRUNE_THRESHOLD}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="Focal weight w", title=_title(entry, run), ylim=(0, None))
    ax.legend(fontsize=7, ncol=2, loc="best")
    return _save(fig, path)


def curves_plot(entry: Entry, run: StoredRun, history: pd.DataFrame, path: Path) -> Path | None:
    losses = [c for c in ("train_loss", "val_loss") if c in history]
    if not losses:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for column in losses:
        left.plot(history["epoch"], history[column], label=column.replace("_", " "))
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    left.legend(fontsize=8)
    for column in ("val_dsc", "val_precision", "val_recall"):
        if column in history:
            right.plot(history["epoch"], history[column], label=column.replace("_", " "))
    right.set(xlabel="epoch", ylabel="score", title="validation", ylim=(0, 1))
    right.legend(fontsize=8)
    fig.suptitle(_title(entry, run), fontsize=9)
    return _save(fig, path)


def _samples(run: StoredRun) -> dict[str, np.ndarray] | None:
    path = run.path / "test_samples.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in ("ids", "images", "masks", "probs")}
    except (OSError, ValueError, KeyError):
        return None


def _show_image(image: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 → something imshow draws (grey for one channel, RGB for three)."""
    return image[0] if image.shape[0] == 1 else np.moveaxis(image[:3], 0, -1)


def samples_plot(dataset: str, entries: list[Entry], path: Path) -> Path | None:
    """Rows = the first run's sample test images; columns = image, ground truth, each entry's
    prediction (p ≥ 0.5) of the same image id, from the entry's first finished run."""
    columns: list[tuple[str, dict[str, np.ndarray]]] = []
    for entry in entries:
        for run in entry.done:
            samples = _samples(run)
            if samples is not None:
                # wrapped: several columns of one network differ only in their parameters
                columns.append(("\n".join(textwrap.wrap(_label(entry), 22)), samples))
                break
    if not columns:
        return None
    reference = columns[0][1]
    ids = [str(i) for i in reference["ids"]]
    plt = _pyplot()
    width = 2 + len(columns)
    fig, axes = plt.subplots(len(ids), width, figsize=(1.9 * width, 1.9 * len(ids)), squeeze=False)
    for r, image_id in enumerate(ids):
        axes[r][0].imshow(_show_image(reference["images"][r]), cmap="gray")
        axes[r][1].imshow(reference["masks"][r], cmap="gray", vmin=0, vmax=1)
        for c, (_, samples) in enumerate(columns, start=2):
            found = [i for i, s in enumerate(samples["ids"]) if str(s) == image_id]
            if found:
                axes[r][c].imshow(samples["probs"][found[0]] >= 128, cmap="gray", vmin=0, vmax=1)
            else:
                axes[r][c].text(0.5, 0.5, "not in samples", ha="center", va="center", fontsize=7)
        axes[r][0].set_ylabel(_short(image_id), fontsize=7)
    for c, name in enumerate(["image", "ground truth", *(n for n, _ in columns)]):
        axes[0][c].set_title(name, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(DATASET_NAMES.get(dataset, dataset), fontsize=9)
    return _save(fig, path)


def fdpt_weights(mask: np.ndarray, eps: float) -> np.ndarray:
    """W^FDPT = (1 + D)^ε (paper 000 eq. 5, spec losses §8.1) for one (H, W) mask in {0, 1}."""
    import torch

    from focalbench.losses.boundary import distance_map

    distance = distance_map(torch.as_tensor(mask[None, None], dtype=torch.float32))[0, 0].numpy()
    return (1.0 + distance.astype(np.float64)) ** eps


def demo_mask(size: int = 64) -> np.ndarray:
    """A disc and a thin bar: a blob and a vessel-like structure, when no run holds a test mask."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size * 0.4) ** 2 + (xx - size * 0.35) ** 2 <= (size * 0.22) ** 2
    bar = (np.abs(yy - xx * 0.5 - size * 0.45) < 1.5) & (xx > size * 0.55)
    return (disc | bar).astype(np.uint8)


def fdpt_plot(mask: np.ndarray, path: Path, source: str) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 1 + len(FDPT_EPSILONS), figsize=(3.0 * (1 + len(FDPT_EPSILONS)), 3.2))
    axes[0].imshow(mask, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"mask ({source})", fontsize=8)
    for ax, eps in zip(axes[1:], FDPT_EPSILONS):
        weights = fdpt_weights(mask, eps)
        shown = ax.imshow(weights, cmap="viridis", vmin=1.0, vmax=2.0 ** eps)
        ax.set_title(rf"$W = (1 + D)^{{\varepsilon}}$, $\varepsilon$ = {eps:g}", fontsize=8)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def _short(image_id: str) -> str:
    return image_id if len(image_id) <= 14 else image_id[:12] + "…"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def make_plots(table: Table, folder: Path) -> list[Path]:
    """Every figure the table's runs allow; returns the written paths."""
    made: list[Path | None] = []
    mask, source = None, "synthetic"
    for entry in table.entries:
        for run in entry.done:
            history = _history(run)
            if history is not None:
                made.append(focal_weights_plot(entry, run, history, folder / f"focal-{_slug(run.key)}.png"))
                made.append(curves_plot(entry, run, history, folder / f"curves-{_slug(run.key)}.png"))
            samples = _samples(run) if mask is None else None
            if samples is not None and len(samples["masks"]):
                # the sample with the most foreground shows the map's interior and exterior best
                i = int(np.argmax(samples["masks"].reshape(len(samples["masks"]), -1).sum(1)))
                mask, source = samples["masks"][i], f"{entry.dataset} {_short(str(samples['ids'][i]))}"
    datasets = dict.fromkeys(e.dataset for e in table.entries)
    for dataset in datasets:
        made.append(samples_plot(dataset, [e for e in table.entries if e.dataset == dataset],
                                 folder / f"samples-{_slug(dataset)}.png"))
    made.append(fdpt_plot(mask if mask is not None else demo_mask(), folder / "fdpt-weights.png", source))
    return [p for p in made if p is not None]
