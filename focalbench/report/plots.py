"""PNG figures of a report (matplotlib, Agg backend, no display needed), named by what they show.

For a table ``<t>`` (``se``, ``losses``, …) and a dataset ``<d>``:

* ``<t>[-<d>]-summary.png`` — per-image DSC of every row side by side (box + points), one panel
  per block, each row's paired-test verdict against the baseline written above its box;
* ``<t>-<d>-focal-weights.png`` — paper 000 Fig. 4: Focal weights over epochs per attention
  position and the final weight W per position against the 0.2 threshold, kept modules green;
* ``<t>-<d>-predictions.png`` — image | ground truth | each row's prediction (p ≥ 0.5) with its
  DSC, from the runs' ``test_samples.npz`` (papers 001–002 Figs. 2–4);
* ``<t>-<d>-fdpt-weights.png`` — only when a row's loss has a distance penalty (DPT/FDPT): the map
  W = (1 + D)^ε for ε = 0.1, 1, 10 on one test mask (paper 000 Fig. 1);
* ``curves-<d>-<row>.png`` — training and validation loss and validation scores per epoch.

``<row>`` is the row's label in the table, lower-cased (``Focal USE-Net (w₀ = 0)`` →
``focal-use-net-w0-0``); a short hash of the configuration is added only where two rows would
get one name.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import textwrap
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from focalbench.prune import DEFAULT_THRESHOLD, keep
from focalbench.report.layouts import DATASET_NAMES, Table, block_title
from focalbench.report.runs import Entry, StoredRun
from focalbench.store import atomic_write_bytes

if TYPE_CHECKING:
    from focalbench.report.build import TestResult

FDPT_EPSILONS = (0.1, 1.0, 10.0)
#: Resolution of the PNGs: a 7-inch-wide figure stays sharp in a printed two-column paper.
DPI = 150


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.titlesize": 9,
            "axes.labelsize": 9,
            "legend.fontsize": 8,
            "xtick.labelsize": 8,
            "ytick.labelsize": 8,
        }
    )
    return plt


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def slug(text: str) -> str:
    """A file-name part from a label: ``Focal USE-Net (w₀ = 0)`` → ``focal-use-net-w0-0``."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9.]+", "-", plain.lower()).strip("-.") or "row"


@dataclass(frozen=True)
class PlotRow:
    """One filled row (or column) of the table, as the figures name it."""

    block: tuple[str, str]
    label: str  # as printed in the table
    entry: Entry
    name: str  # unique file-name part: dataset[-loss]-label


def plot_rows(table: Table) -> list[PlotRow]:
    """The table's filled slots in table order, each with a file-name part unique in the table."""
    placements = [p for p in table.placements if p.entry is not None]
    per_dataset: dict[str, set[tuple[str, str]]] = {}
    for p in placements:
        per_dataset.setdefault(p.block[0], set()).add(p.block)
    rows = []
    for p in placements:
        label = " · ".join(t for t in p.labels if t)
        dataset, loss = p.block
        stem = dataset if len(per_dataset[dataset]) == 1 else f"{dataset}-{loss}"
        rows.append(PlotRow(p.block, label, p.entry, f"{slug(stem)}-{slug(label)}"))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.name] = counts.get(row.name, 0) + 1
    return [
        row
        if counts[row.name] == 1
        else PlotRow(row.block, row.label, row.entry, f"{row.name}-{_hash(row.entry)}")
        for row in rows
    ]


def _hash(entry: Entry) -> str:
    identity = f"{entry.dataset}|{entry.protocol}|{entry.name}|{entry.params}"
    return hashlib.sha256(identity.encode()).hexdigest()[:6]


def _history(run: StoredRun) -> pd.DataFrame | None:
    path = run.path / "history.csv"
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    return frame if "epoch" in frame and not frame.empty else None


def _samples(run: StoredRun) -> dict[str, np.ndarray] | None:
    path = run.path / "test_samples.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in ("ids", "images", "masks", "probs")}
    except (OSError, ValueError, KeyError):
        return None


def _wrap(label: str, width: int = 16) -> str:
    return "\n".join(textwrap.wrap(label, width, break_on_hyphens=False)) or label


def _dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


# ------------------------------------------------------------------------------------------ summary


def _verdict(row: PlotRow, tests: Sequence[TestResult]) -> tuple[str, str]:
    """(text, colour) above a row's box: baseline, p_Holm with † when significant, or nothing."""
    for t in tests:
        if t.block == row.block and t.baseline is row.entry:
            return "baseline", "black"
    for t in tests:
        if t.block == row.block and t.entry is row.entry:
            text = f"p={t.p_holm:.2g}" + (" †" if t.significant else "")
            return text, "tab:red" if t.significant else "0.35"
    return "", "black"


def summary_plot(
    table: Table, rows: list[PlotRow], tests: Sequence[TestResult], path: Path
) -> Path | None:
    """Per-image DSC of every row, one panel per block; each row's paired-test verdict above it."""
    blocks = list(dict.fromkeys(r.block for r in rows))
    scored = {
        b: [(r, r.entry.per_image("dsc").to_numpy()) for r in rows if r.block == b] for b in blocks
    }
    scored = {b: v for b, v in scored.items() if any(len(s) for _, s in v)}
    if not scored:
        return None
    plt = _pyplot()
    metric = table.layout.metric_name("dsc")
    width = max(len(v) for v in scored.values())
    fig, axes = plt.subplots(
        len(scored), 1, figsize=(max(4.0, 1.05 * width + 1.2), 3.3 * len(scored)), squeeze=False
    )
    rng = np.random.default_rng(0)  # the points' horizontal jitter only
    for ax, (block, cells) in zip(axes[:, 0], scored.items(), strict=False):
        boxes = [s if len(s) else np.array([np.nan]) for _, s in cells]
        ax.boxplot(
            boxes,
            positions=range(1, len(cells) + 1),
            widths=0.55,
            showfliers=False,
            medianprops={"color": "black"},
            boxprops={"color": "0.3"},
            whiskerprops={"color": "0.3"},
            capprops={"color": "0.3"},
        )
        for x, (row, scores) in enumerate(cells, start=1):
            ax.scatter(
                x + rng.uniform(-0.15, 0.15, len(scores)),
                scores,
                s=10,
                alpha=0.6,
                color="tab:blue",
                linewidths=0,
                zorder=3,
            )
            if len(scores):
                ax.scatter(
                    [x],
                    [scores.mean()],
                    marker="D",
                    s=22,
                    color="tab:orange",
                    zorder=4,
                    label="mean" if x == 1 else None,
                )
            text, colour = _verdict(row, tests)
            ax.text(
                x,
                1.02,
                text,
                ha="center",
                va="bottom",
                fontsize=8,
                color=colour,
                transform=ax.get_xaxis_transform(),
            )
        ax.set_xticks(range(1, len(cells) + 1), [_wrap(r.label) for r, _ in cells])
        ax.set_xlim(0.4, len(cells) + 0.6)
        ax.set_ylim(0, 1)
        n = max(len(s) for _, s in cells)
        ax.set_ylabel(f"per-image {metric}")
        ax.set_title(f"{block_title(block)} · {n} test images", pad=16)
        ax.grid(axis="y", alpha=0.3)
    if tests:
        note = (
            "p = Holm-adjusted p of a two-sided paired Wilcoxon signed-rank test of per-image DSC "
            "against the baseline; † p < 0.05"
        )
    else:
        note = "no row tested: pass --baseline NAME to mark each row's paired test against it"
    fig.text(
        0.01,
        -0.01,
        textwrap.fill(note + ". Box: quartiles and 1.5 IQR whiskers; ◆ mean.", 110),
        fontsize=7.5,
        ha="left",
        va="top",
        color="0.25",
    )
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------------------ focal weights


def _focal_columns(history: pd.DataFrame) -> list[str]:
    return [c for c in history.columns if c.startswith("focal_")]


def _decides_pruning(entry: Entry) -> bool:
    """The zero-initialised Focal network's weights decide the pruning (paper 000 §2.1, Fig. 4)."""
    return entry.model_params.get("focal_init") in (0, 0.0) and not entry.pruned


def focal_weights_plot(
    dataset: str, rows: list[PlotRow], path: Path, threshold: float = DEFAULT_THRESHOLD
) -> Path | None:
    """One line of panels per Focal row of ``dataset`` (zero-initialised first): the weights over
    epochs, and the final weight W per position as bars against the threshold. Green marks the
    modules the pruning keeps (W > threshold) — only for the zero-initialised run, whose weights
    the pruning reads."""
    found = []
    for row in rows:
        if row.entry.dataset != dataset or row.entry.pruned or not row.entry.done:
            continue
        run = row.entry.done[0]
        history = _history(run)
        if history is not None and _focal_columns(history):
            found.append((row, run, history))
    if not found:
        return None
    found.sort(key=lambda f: not _decides_pruning(f[0].entry))
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(
        len(found),
        2,
        figsize=(8.6, 3.4 * len(found)),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.5, 1]},
    )
    colours = plt.get_cmap("tab10")
    for (line_ax, bar_ax), (row, run, history) in zip(axes, found, strict=False):
        columns = _focal_columns(history)
        final = {c.removeprefix("focal_"): float(history[c].iloc[-1]) for c in columns}
        decides = _decides_pruning(row.entry)
        kept = {w.name: w.kept for w in keep(final, threshold)} if decides else {}
        for i, column in enumerate(columns):
            position = column.removeprefix("focal_")
            is_kept = kept.get(position, True)
            line_ax.plot(
                history["epoch"],
                history[column],
                color=colours(i % 10),
                linestyle="-" if is_kept else ":",
                linewidth=2.0 if is_kept else 1.2,
                label=position,
            )
        line_ax.axhline(threshold, color="tab:red", linestyle="--", linewidth=1)
        line_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        highest = float(history[columns].max().max())
        # w₀ = 0 weights stay small: a scale up to 1 would flatten the separation at 0.2
        top = (
            max(2.5 * threshold, highest) if decides else max(1.0, highest)
        ) * 1.18  # + room for values
        line_ax.set(xlabel="epoch", ylabel="Focal weight w", ylim=(0, top))
        # below the axes: a legend inside would hide the lines of the w₀ = 1 network near 1
        line_ax.legend(
            ncol=min(len(columns), 5),
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.2),
            frameon=False,
            handlelength=1.6,
            columnspacing=1.0,
        )
        runs = len(row.entry.done)
        seed = f"seed {run.config.get('seed', 0)}" + (
            f", fold {run.config['fold']}" if run.config.get("fold") is not None else ""
        )
        line_ax.set_title(
            f"{row.label} — {seed}" + (f" (1 of {runs} runs)" if runs > 1 else ""), loc="left"
        )

        names = list(final)
        bar_colours = (
            ["tab:green" if kept.get(n) else "0.65" for n in names]
            if decides
            else ["tab:blue"] * len(names)
        )
        bar_ax.bar(range(len(names)), list(final.values()), color=bar_colours)
        for x, value in enumerate(final.values()):
            bar_ax.text(
                x, value + top * 0.015, f"{value:.2f}", ha="center", va="bottom", fontsize=7
            )
        for ax in (line_ax, bar_ax):
            ax.text(
                1.0,
                threshold,
                f" {threshold:g}",
                transform=ax.get_yaxis_transform(),
                color="tab:red",
                fontsize=7,
                va="center",
                ha="left",
            )
        bar_ax.axhline(threshold, color="tab:red", linestyle="--", linewidth=1)
        bar_ax.set_xticks(range(len(names)), names, rotation=0 if len(names) <= 5 else 45)
        bar_ax.set(ylabel=f"W after epoch {int(history['epoch'].iloc[-1])}", ylim=(0, top))
        if decides:
            n_kept = sum(kept.values())
            bar_ax.set_title(
                f"final W: pruning keeps {n_kept} of {len(names)} (W > {threshold:g}, green)",
                loc="left",
            )
        else:
            bar_ax.set_title("final W (initialised at w = 1: not used for pruning)", loc="left")
    fig.suptitle(
        f"{_dataset_name(dataset)}: Focal layer weights during training (paper 000 Fig. 4)"
    )
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------------------------- curves


def curves_plot(row: PlotRow, path: Path) -> Path | None:
    """Loss (train solid, validation dashed) and validation scores per epoch; one line per run."""
    found = [(run, h) for run in row.entry.done if (h := _history(run)) is not None]
    found = [(run, h) for run, h in found if {"train_loss", "val_loss"} & set(h.columns)]
    if not found:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 3.2))
    scores = [c for c in ("val_dsc", "val_precision", "val_recall") if c in found[0][1]]
    colours = {"val_dsc": "tab:blue", "val_precision": "tab:orange", "val_recall": "tab:green"}
    several = len(found) > 1
    for k, (run, history) in enumerate(found):
        tag = f" (seed {run.config.get('seed', 0)})" if several else ""
        alpha = 1.0 if k == 0 else 0.45
        if "train_loss" in history:
            left.plot(
                history["epoch"],
                history["train_loss"],
                color="tab:blue",
                alpha=alpha,
                label=f"train{tag}",
            )
        if "val_loss" in history:
            left.plot(
                history["epoch"],
                history["val_loss"],
                color="tab:orange",
                linestyle="--",
                alpha=alpha,
                label=f"validation{tag}",
            )
        for column in scores:
            right.plot(
                history["epoch"],
                history[column],
                color=colours[column],
                alpha=alpha,
                label=column.removeprefix("val_").replace("dsc", "DSC") if k == 0 else None,
            )
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    left.set(xlabel="epoch", ylabel=f"loss ({row.entry.loss})", title="loss")
    right.set(
        xlabel="epoch", ylabel="score (validation set)", title="validation scores", ylim=(0, 1)
    )
    left.legend()
    right.legend()
    runs = f"{len(found)} runs" if several else f"seed {found[0][0].config.get('seed', 0)}"
    title = f"{_dataset_name(row.entry.dataset)} · {row.label} · {row.entry.model} · {runs}"
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


# -------------------------------------------------------------------------------------- predictions


def _show_image(image: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 → something imshow draws (grey for one channel, RGB for three)."""
    return image[0] if image.shape[0] == 1 else np.moveaxis(image[:3], 0, -1)


def _image_dsc(run: StoredRun) -> dict[str, float]:
    if run.per_image is None or "dsc" not in run.per_image:
        return {}
    return dict(
        zip(run.per_image["image_id"].astype(str), run.per_image["dsc"].astype(float), strict=False)
    )


def predictions_plot(dataset: str, rows: list[PlotRow], path: Path) -> Path | None:
    """Rows = the first run's sample test images; columns = image, ground truth, each row's
    prediction (p ≥ 0.5) of the same image id from its first finished run, with the image's DSC."""
    columns: list[tuple[str, dict[str, np.ndarray], dict[str, float]]] = []
    for row in rows:
        if row.entry.dataset != dataset:
            continue
        for run in row.entry.done:
            samples = _samples(run)
            if samples is not None:
                columns.append((row.label, samples, _image_dsc(run)))
                break
    if not columns:
        return None
    reference = columns[0][1]
    ids = [str(i) for i in reference["ids"]]
    plt = _pyplot()
    width = 2 + len(columns)
    fig, axes = plt.subplots(
        len(ids), width, figsize=(1.55 * width, 1.62 * len(ids) + 0.6), squeeze=False
    )
    for r, image_id in enumerate(ids):
        axes[r][0].imshow(_show_image(reference["images"][r]), cmap="gray")
        axes[r][1].imshow(reference["masks"][r], cmap="gray", vmin=0, vmax=1)
        for c, (_, samples, dsc) in enumerate(columns, start=2):
            found = [i for i, s in enumerate(samples["ids"]) if str(s) == image_id]
            if found:
                axes[r][c].imshow(samples["probs"][found[0]] >= 128, cmap="gray", vmin=0, vmax=1)
                if math.isfinite(dsc.get(image_id, math.nan)):
                    axes[r][c].set_xlabel(f"DSC {dsc[image_id]:.3f}", fontsize=7, labelpad=2)
            else:
                axes[r][c].text(0.5, 0.5, "not in\nsamples", ha="center", va="center", fontsize=7)
        axes[r][0].set_ylabel(_short(image_id), fontsize=7)
    for c, name in enumerate(["image", "ground truth", *(n for n, _, _ in columns)]):
        axes[0][c].set_title(_wrap(name, 14), fontsize=7.5)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{_dataset_name(dataset)}: test images, ground truth and predictions (p ≥ 0.5)")
    fig.tight_layout()
    return _save(fig, path)


def _short(image_id: str) -> str:
    return image_id if len(image_id) <= 12 else image_id[:10] + "…"


# --------------------------------------------------------------------------------------------- FDPT


def uses_distance_penalty(entry: Entry) -> bool:
    """A loss with a DPT or FDPT term (paper 000 §2.2; ``fdpt(eps=0)`` is normalised away)."""
    return any(term in ("dpt", "fdpt") for term in re.findall(r"[a-z_]+", entry.family))


def fdpt_weights(mask: np.ndarray, eps: float) -> np.ndarray:
    """W^FDPT = (1 + D)^ε (paper 000 eq. 5, spec losses §8.1) for one (H, W) mask in {0, 1}."""
    import torch

    from focalbench.losses.boundary import distance_map

    distance = distance_map(torch.as_tensor(mask[None, None], dtype=torch.float32))[0, 0].numpy()
    return (1.0 + distance.astype(np.float64)) ** eps


def fdpt_plot(mask: np.ndarray, path: Path, source: str) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, 1 + len(FDPT_EPSILONS), figsize=(2.4 * (1 + len(FDPT_EPSILONS)), 2.5)
    )
    axes[0].imshow(mask, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"mask ({source})", fontsize=8)
    for ax, eps in zip(axes[1:], FDPT_EPSILONS, strict=False):
        weights = fdpt_weights(mask, eps)
        shown = ax.imshow(weights, cmap="viridis", vmin=1.0, vmax=2.0**eps)
        ax.set_title(rf"$W = (1 + D)^{{\varepsilon}}$, $\varepsilon$ = {eps:g}", fontsize=8)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "FDPT pixel weights: D = 1 at the boundary, 0 farthest from it (paper 000 Fig. 1)",
        fontsize=8,
    )
    fig.tight_layout()
    return _save(fig, path)


def _richest_mask(rows: list[PlotRow]) -> tuple[np.ndarray, str] | None:
    """The sample test mask with the most foreground: it shows the map inside and outside best."""
    for row in rows:
        for run in row.entry.done:
            samples = _samples(run)
            if samples is not None and len(samples["masks"]):
                i = int(np.argmax(samples["masks"].reshape(len(samples["masks"]), -1).sum(1)))
                return samples["masks"][i], _short(str(samples["ids"][i]))
    return None


# ---------------------------------------------------------------------------------------------- all


def make_plots(table: Table, folder: Path, tests: Sequence[TestResult] = ()) -> list[Path]:
    """Every figure the table's runs allow (see the module docstring); returns the written paths."""
    rows = plot_rows(table)
    name = table.layout.name.value
    datasets = list(dict.fromkeys(r.entry.dataset for r in rows))
    made: list[Path | None] = []
    scope = f"{name}-{slug(datasets[0])}" if len(datasets) == 1 else name
    made.append(summary_plot(table, rows, tests, folder / f"{scope}-summary.png"))
    for dataset in datasets:
        stem = f"{name}-{slug(dataset)}"
        made.append(focal_weights_plot(dataset, rows, folder / f"{stem}-focal-weights.png"))
        made.append(predictions_plot(dataset, rows, folder / f"{stem}-predictions.png"))
        penalised = [
            r for r in rows if r.entry.dataset == dataset and uses_distance_penalty(r.entry)
        ]
        found = _richest_mask(penalised) if penalised else None
        if found is not None:
            made.append(
                fdpt_plot(
                    found[0],
                    folder / f"{stem}-fdpt-weights.png",
                    f"{_dataset_name(dataset)} {found[1]}",
                )
            )
    made += [curves_plot(row, folder / f"curves-{row.name}.png") for row in rows]
    return [p for p in made if p is not None]
