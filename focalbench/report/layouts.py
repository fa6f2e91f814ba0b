"""The papers' table layouts: which entry fills which cell, and which cells compete for bold.

Two shapes cover the papers:

* **metric rows** (paper 000 Tables 2–4): a block of rows per dataset (DSC, precision, recall,
  and #SE/#AG), one column per loss or network;
* **metric columns** (paper 003 Tables 1–2, paper 002 Tables 1–3, ``auto``): a block of rows per
  dataset, one row per network (+ loss), one column per metric.

A layout names its slots (the papers' rows or columns) and the entries each slot accepts. Entries
the layout accepts but no slot names are appended as extra slots, so no finished run is hidden;
two entries that fall in one slot (e.g. two protocols) each get a slot labelled with what differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from focalbench.registry import did_you_mean
from focalbench.report.runs import Entry, parse_loss

#: Higher is better for every score except these (paper 002 bolds the smallest Params/FLOPs).
LOWER_IS_BETTER = {"params", "gflops", "hd95"}
#: Not a score: shown, never bolded, never tested.
NOT_RANKED = {"modules"}
#: Decimals of a score: paper 000 and paper 002 print four, paper 003 three (its Layout says so).
DECIMALS = 4

METRIC_NAMES = {
    "dsc": "DSC",
    "precision": "Precision",
    "recall": "Recall",
    "jaccard": "Jaccard",
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "hd95": "HD95",
    "params": "Params (M)",
    "gflops": "GFLOPs",
    "modules": "#modules",
}


def metrics_problem(names: Sequence[str]) -> str | None:
    """What is wrong with a list of metric names to show (``--metrics``, a study file's
    ``[table] metrics``): none given, an unknown name, a name given twice; ``None`` if nothing.
    Any of :data:`METRIC_NAMES` may be shown in any layout: a cell is the entry's score for it."""
    if not names:
        return f"names no metric; choose from: {', '.join(METRIC_NAMES)}"
    for name in names:
        if name not in METRIC_NAMES:
            hint = did_you_mean(name, METRIC_NAMES)
            guess = f" (did you mean {hint!r}?)" if hint else ""
            return (
                f"names an unknown metric {name!r}{guess}; choose from: {', '.join(METRIC_NAMES)}"
            )
    if twice := [n for n in dict.fromkeys(names) if names.count(n) > 1]:
        return f"names {twice[0]!r} twice; name each metric once"
    return None


DATASET_NAMES = {
    "drive": "DRIVE",
    "dsb2018": "2018 DSB",
    "cvc-clinicdb": "CVC-ClinicDB",
    "isic2018": "ISIC 2018",
    "bus": "BUS 2017 B",
    "busi": "BUSI",
    "lung": "Lung CT",
    "sample": "sample",
}


class TableName(str, Enum):
    losses = "losses"
    se = "se"
    ag = "ag"
    focal_tversky = "focal-tversky"
    focusnet = "focusnet"
    auto = "auto"


class Shape(str, Enum):
    metric_rows = "metric-rows"
    metric_columns = "metric-columns"


@dataclass(frozen=True)
class Slot:
    """A paper's row or column: its labels and the entries it accepts."""

    labels: tuple[str, ...]
    models: tuple[str, ...]
    families: tuple[str, ...] | None = None  # None: any loss
    pruned: bool = False
    focal_init: tuple[float | None, ...] | None = (
        None  # accepted model_params.focal_init (None: unset)
    )

    def accepts(self, entry: Entry) -> bool:
        return (
            entry.model in self.models
            and entry.pruned == self.pruned
            and (self.families is None or entry.family in self.families)
            and (self.focal_init is None or entry.model_params.get("focal_init") in self.focal_init)
        )


@dataclass(frozen=True)
class Layout:
    name: TableName
    title: str
    shape: Shape
    metrics: tuple[str, ...]
    slots: tuple[Slot, ...]
    label_header: tuple[str, ...]
    accepts: Callable[[Entry], bool]
    extra_labels: Callable[[Entry], tuple[str, ...]]
    datasets: tuple[str, ...] = ()  # the paper's datasets, shown even without runs
    by_loss: bool = False  # one block per dataset × loss (paper 000 Tables 3–4 fix the loss)
    # the slot's labels once filled; paper 003's Parameters column shows a run's own loss arguments
    filled_labels: Callable[[Slot, Entry], tuple[str, ...]] = lambda slot, entry: slot.labels
    metric_names: dict[str, str] = field(default_factory=dict)
    paper: str | None = None  # the paper whose tables the layout reproduces (its footnotes apply)
    decimals: int = DECIMALS  # of a score, as the paper prints them

    def metric_name(self, metric: str) -> str:
        return self.metric_names.get(metric, METRIC_NAMES.get(metric, metric))


def _models(*names: str) -> Callable[[Entry], bool]:
    return lambda entry: entry.model in names


def _focal_slots(attention: str, focal: str, label: str) -> tuple[Slot, ...]:
    """Paper 000 Tables 3–4, plus the zero-initialised Focal network whose weights decide the pruning
    (Fig. 4). Focal weights start at w₀ = 1 unless set (models spec §4). A pruned network that
    kept no module is the plain U-Net (``prune`` writes ``model="unet"`` then)."""
    return (
        Slot(("U-Net",), ("unet",)),
        Slot((label,), (attention,)),
        Slot((f"Focal {label}",), (focal,), focal_init=(None, 1, 1.0)),
        Slot((f"Focal {label} (w₀ = 0)",), (focal,), focal_init=(0, 0.0)),
        Slot((f"Focal {label} (pruned)",), (focal, "unet"), pruned=True),
    )


_PAPER000_LOSSES = (
    ("DSC", "dice"),
    ("DSC + DPT", "dice+dpt"),
    ("DSC + FDPT", "dice+fdpt(eps=0.1)"),
    ("DSC + CE", "dice+ce"),
    ("DSC + CE + DPT", "dice+ce+dpt"),
    ("DSC + CE + FDPT", "dice+ce+fdpt(eps=0.1)"),
    ("UFL", "ufl"),
    ("UFL + DPT", "ufl+dpt"),
    ("UFL + FDPT", "ufl+fdpt(eps=0.1)"),
)
_PAPER000_DATASETS = ("drive", "dsb2018", "cvc-clinicdb")

# The authors' networks (newmodels.py) first; MIScnn's, which 0.1.0 trained, fill the same rows.
_ABRAHAM_UNET = ("unet-abraham", "unet")
_ABRAHAM_ATTENTION = ("attention-unet-abraham", "attention-unet")
_PAPER003_MODELS = {*_ABRAHAM_UNET, *_ABRAHAM_ATTENTION, "pyramid-attention-unet"}

_PAPER003_ROWS = (
    ("U-Net + DL", "α = 0.5, β = 0.5", _ABRAHAM_UNET, ("dice",)),
    ("U-Net + TL", "α = 0.7, β = 0.3", _ABRAHAM_UNET, ("tversky",)),
    ("U-Net + FTL", "α = 0.7, β = 0.3, γ = 4/3", _ABRAHAM_UNET, ("focal_tversky",)),
    ("Attn U-Net + DL", "α = 0.5, β = 0.5", _ABRAHAM_ATTENTION, ("dice",)),
    ("Attn U-Net + Multi-Input + DL", "α = 0.5, β = 0.5", ("pyramid-attention-unet",), ("dice",)),
    (
        "Attn U-Net + Multi-Input + TL",
        "α = 0.7, β = 0.3",
        ("pyramid-attention-unet",),
        ("tversky",),
    ),
    # The last row supervises the side outputs with FTL and the last layer with TL (paper 003 §4).
    (
        "Attn U-Net + Multi-Input + FTL",
        "α = 0.7, β = 0.3, γ = 4/3",
        ("pyramid-attention-unet",),
        ("focal_tversky", "deep_supervision"),
    ),
)

# Table 1's order (FCN and Wide UNet are not in focalbench). The -small presets are Table 3's
# reduced 2018 DSB networks, the ones ``--study focusnet`` trains on dsb2018: same row.
_PAPER002_ROWS = (
    ("U-Net", ("unet",)),
    ("R2U-Net", ("r2u-net",)),
    ("BCDU-Net", ("bcdu-net", "bcdu-net-small")),
    ("UNet++", ("unetplusplus", "smp-unetplusplus", "smp-unet++")),
    ("Attn U-Net", ("attention-unet-kaul", "attention-unet")),
    ("FocusNet", ("focusnet", "focusnet-small")),
    ("FocusNet++", ("focusnetpp", "focusnetpp-small")),
)


def _loss_arguments(entry: Entry) -> str:
    """The loss arguments a run set itself (``tversky(alpha=0.6)`` → ``alpha=0.6``); "" for defaults."""
    return ", ".join(f"{k}={v}" for _, params in parse_loss(entry.loss) for k, v in params.items())


def _variant(entry: Entry) -> str:
    parts = (["pruned"] if entry.pruned else []) + ([entry.params] if entry.params else [])
    return ", ".join(parts)


LAYOUTS: dict[TableName, Layout] = {
    TableName.losses: Layout(
        TableName.losses,
        "U-Net trained with each loss (layout of paper 000 Table 2)",
        Shape.metric_rows,
        ("dsc", "precision", "recall"),
        tuple(Slot((label,), ("unet",), (family,)) for label, family in _PAPER000_LOSSES),
        ("Dataset", "Metrics"),
        lambda e: e.model == "unet" and not e.pruned,
        lambda e: (e.family,),
        _PAPER000_DATASETS,
        paper="000",
    ),
    TableName.se: Layout(
        TableName.se,
        "U-Net, USE-Net and Focal USE-Net before and after pruning (layout of paper 000 Table 3)",
        Shape.metric_rows,
        ("modules", "dsc", "precision", "recall"),
        _focal_slots("use-net", "focal-use-net", "USE-Net"),
        ("Dataset", "Metric"),
        _models("unet", "use-net", "focal-use-net"),
        lambda e: (e.name,),
        _PAPER000_DATASETS,
        by_loss=True,
        metric_names={"modules": "#SE"},
        paper="000",
    ),
    TableName.ag: Layout(
        TableName.ag,
        "U-Net, Attention U-Net and Focal Attention U-Net before and after pruning (layout of paper 000 Table 4)",
        Shape.metric_rows,
        ("modules", "dsc", "precision", "recall"),
        _focal_slots("attention-unet", "focal-attention-unet", "Attention U-Net"),
        ("Dataset", "Metric"),
        _models("unet", "attention-unet", "focal-attention-unet"),
        lambda e: (e.name,),
        _PAPER000_DATASETS,
        by_loss=True,
        metric_names={"modules": "#AG"},
        paper="000",
    ),
    TableName.focal_tversky: Layout(
        TableName.focal_tversky,
        "Tversky and Focal Tversky losses with the improved Attention U-Net (layout of paper 003 Tables 1–2)",
        Shape.metric_columns,
        ("dsc", "precision", "recall"),
        tuple(
            Slot((label, params), models, families)
            for label, params, models, families in _PAPER003_ROWS
        ),
        ("Dataset", "Model", "Parameters"),
        lambda e: not e.pruned and e.model in _PAPER003_MODELS,
        lambda e: (f"{e.model} + {e.loss}", _loss_arguments(e) or _variant(e)),
        ("bus", "isic2018"),
        filled_labels=lambda slot, e: (slot.labels[0], _loss_arguments(e) or slot.labels[1]),
        paper="003",
        decimals=3,  # "0.804 ± 0.024"
    ),
    TableName.focusnet: Layout(
        TableName.focusnet,
        "Architectures compared by precision, recall, DI, JI, parameters and FLOPs (layout of paper 002 Tables 1–3)",
        Shape.metric_columns,
        ("params", "gflops", "precision", "recall", "dsc", "jaccard"),
        tuple(Slot((label,), models) for label, models in _PAPER002_ROWS),
        ("Dataset", "Method"),
        lambda e: not e.pruned,
        lambda e: (e.model,),
        ("isic2018", "dsb2018"),
        metric_names={"dsc": "DI", "jaccard": "JI"},
        paper="002",
    ),
    TableName.auto: Layout(
        TableName.auto,
        "Every configuration in the results folder",
        Shape.metric_columns,
        ("dsc", "precision", "recall", "jaccard", "params"),
        (),
        ("Dataset", "Model", "Loss", "Variant"),
        lambda e: True,
        lambda e: (e.model, e.loss, _variant(e)),
    ),
}


# ----------------------------------------------------------------------------------------------
# the table a layout makes


@dataclass
class Cell:
    text: str = ""
    entry: Entry | None = None
    metric: str | None = None
    group: tuple | None = None  # cells that compete for bold
    bold: bool = False
    marked: bool = False  # significant against the baseline (†)
    ci: tuple[float, float] | None = None
    decimals: int = DECIMALS

    @property
    def is_value(self) -> bool:
        return self.metric is not None


@dataclass
class Placement:
    """One slot filled (or not) in one block."""

    block: tuple[str, str]  # (dataset, loss family or "")
    labels: tuple[str, ...]
    entry: Entry | None


@dataclass
class Table:
    layout: Layout
    header: list[str]
    rows: list[list[Cell]]
    rules: list[int]  # a horizontal rule before these row indices (block boundaries)
    placements: list[Placement]

    @property
    def entries(self) -> list[Entry]:
        return [p.entry for p in self.placements if p.entry is not None]


def block_title(block: tuple[str, str]) -> str:
    dataset, loss = block
    name = DATASET_NAMES.get(dataset, dataset)
    return f"{name} · {loss}" if loss else name


def place(layout: Layout, entries: list[Entry], dataset: str | None = None) -> list[Placement]:
    """Assign entries to the layout's slots, block by block (dataset, and loss where the layout fixes one)."""
    chosen = [e for e in entries if layout.accepts(e) and (dataset is None or e.dataset == dataset)]
    blocks: dict[tuple[str, str], list[Entry]] = {}
    for d in layout.datasets:
        if dataset is None or d == dataset:
            blocks.setdefault((d, ""), [])
    for entry in chosen:
        if layout.by_loss:  # the dataset's runs name their loss: its placeholder block goes
            blocks.pop((entry.dataset, ""), None)
        blocks.setdefault((entry.dataset, entry.family if layout.by_loss else ""), []).append(entry)
    order = {d: i for i, d in enumerate(layout.datasets)}
    placements: list[Placement] = []
    for block in sorted(blocks, key=lambda b: (order.get(b[0], len(order)), b)):
        placements += _place_block(layout, block, blocks[block])
    return placements


def _place_block(layout: Layout, block: tuple[str, str], entries: list[Entry]) -> list[Placement]:
    out: list[Placement] = []
    left = list(entries)
    for slot in layout.slots:
        taken = [e for e in left if slot.accepts(e)]
        left = [e for e in left if e not in taken]
        if not taken:
            out.append(Placement(block, slot.labels, None))
        elif len(taken) == 1:
            out.append(Placement(block, layout.filled_labels(slot, taken[0]), taken[0]))
        else:
            for entry in taken:
                first, *rest = layout.filled_labels(slot, entry)
                out.append(
                    Placement(block, (f"{first} [{_difference(entry, taken)}]", *rest), entry)
                )
    for entry in left:
        out.append(Placement(block, layout.extra_labels(entry), entry))
    return out


def _difference(entry: Entry, others: list[Entry]) -> str:
    """What sets ``entry`` apart from the others in its slot (loss, protocol or parameters)."""
    fields = [
        ("loss", lambda e: e.loss),
        ("protocol", lambda e: e.protocol),
        ("params", lambda e: e.params),
    ]
    shown = [get(entry) for _, get in fields if len({get(o) for o in others}) > 1]
    return ", ".join(s for s in shown if s) or entry.name


def build_table(layout: Layout, entries: list[Entry], dataset: str | None = None) -> Table:
    placements = place(layout, entries, dataset)
    metrics = list(layout.metrics)
    if (
        layout.name is TableName.auto
        and "params" in metrics
        and not any(np.isfinite(e.values("params")).any() for p in placements if (e := p.entry))
    ):
        metrics.remove("params")  # no run recorded its size; an all-dash column says nothing
    if layout.shape is Shape.metric_rows:
        return _metric_rows(layout, placements, metrics)
    return _metric_columns(layout, placements, metrics)


def _metric_rows(layout: Layout, placements: list[Placement], metrics: list[str]) -> Table:
    columns: list[tuple[str, ...]] = []
    for p in placements:
        if p.labels not in columns:
            columns.append(p.labels)
    header = [*layout.label_header, *(" ".join(c) for c in columns)]
    rows: list[list[Cell]] = []
    rules: list[int] = []
    blocks = list(dict.fromkeys(p.block for p in placements))
    for block in blocks:
        rules.append(len(rows))
        by_column = {p.labels: p.entry for p in placements if p.block == block}
        for i, metric in enumerate(metrics):
            row = [Cell(block_title(block) if i == 0 else ""), Cell(layout.metric_name(metric))]
            row += [
                Cell(
                    entry=by_column.get(c),
                    metric=metric,
                    group=(block, metric),
                    decimals=layout.decimals,
                )
                for c in columns
            ]
            rows.append(row)
    return Table(layout, header, rows, rules, placements)


def _metric_columns(layout: Layout, placements: list[Placement], metrics: list[str]) -> Table:
    header = [*layout.label_header, *(layout.metric_name(m) for m in metrics)]
    rows: list[list[Cell]] = []
    rules: list[int] = []
    width = len(layout.label_header) - 1
    previous = None
    for p in placements:
        if p.block != previous:
            rules.append(len(rows))
        labels = (p.labels + ("",) * width)[:width]
        row = [
            Cell(block_title(p.block) if p.block != previous else ""),
            *(Cell(t) for t in labels),
        ]
        row += [
            Cell(entry=p.entry, metric=m, group=(p.block, m), decimals=layout.decimals)
            for m in metrics
        ]
        rows.append(row)
        previous = p.block
    return Table(layout, header, rows, rules, placements)
