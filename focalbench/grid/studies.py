"""The studies: a registry of named, declarative paper grids.

A study is a list of table *rows* (a network and a loss, e.g. "Focal USE-Net (w₀ = 0)") built
per dataset (UFL's γ is the dataset's), with its target table, protocol and default folds. The
pruned rows of the attention studies name the zero-initialised row whose run they prune.

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
* the general form ``models × losses`` (:func:`custom_study`).

A new study is one more ``Study(...)`` added to :data:`STUDIES` (and, for a ``--study`` flag,
a member of :class:`StudyName`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from focalbench.errors import FocalbenchError
from focalbench.registry import Registry
from focalbench.report.layouts import TableName


class StudyName(str, Enum):
    """The ``--study`` choices."""

    losses = "losses"
    focal_tversky = "focal-tversky"
    focusnet = "focusnet"


class AttentionStudy(str, Enum):
    """The ``--attention`` choices: paper 000's squeeze-and-excitation or attention-gate study."""

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
    loss_params: dict[str, Any] = field(default_factory=dict)  # a study file's loss.KEY
    overrides: dict[str, Any] = field(default_factory=dict)  # a study file's protocol fields


@dataclass(frozen=True)
class TableSpec:
    """The table a study feeds, as ``focalbench report`` lays it out: its title, the layout
    (a ``report --table`` name), the row each other row is tested against (``--baseline``: a
    model, a loss or MODEL:LOSS; ``None``: no tests) and the metrics shown, in order
    (``--metrics``; ``None``: the layout's own)."""

    title: str
    layout: TableName = TableName.auto
    baseline: str | None = None
    metrics: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """As grid.json and ``ablate --dry-run --json`` record it."""
        return {
            "title": self.title,
            "layout": self.layout.value,
            "baseline": self.baseline,
            "metrics": None if self.metrics is None else list(self.metrics),
        }


@dataclass(frozen=True)
class Study:
    """A named study: the rows of a paper table, its protocol and its default folds."""

    name: str
    table: TableSpec
    protocol: str
    rows: Callable[[str | None], list[Row]]  # dataset -> rows (UFL's γ is the dataset's)
    folds: int | None = None
    datasets: str = ""  # the paper's datasets, for --help
    seeds: tuple[int, ...] = ()  # a study file's default --seeds
    default_datasets: tuple[str, ...] = ()  # a study file's default --dataset


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


def _attention_rows(kind: AttentionStudy) -> Callable[[str], list[Row]]:
    plain, net, focal = {
        AttentionStudy.se: ("USE-Net", "use-net", "focal-use-net"),
        AttentionStudy.ag: ("Attention U-Net", "attention-unet", "focal-attention-unet"),
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
        ("DSC", "dice"),
        ("DSC + DPT", "dice+dpt"),
        ("DSC + FDPT", "dice+fdpt(eps=0.1)"),
        ("DSC + CE", "dice_ce"),
        ("DSC + CE + DPT", "dice_ce+dpt"),
        ("DSC + CE + FDPT", "dice_ce+fdpt(eps=0.1)"),
        ("UFL", ufl),
        ("UFL + DPT", f"{ufl}+dpt"),
        ("UFL + FDPT", f"{ufl}+fdpt(eps=0.1)"),
    ]
    return [Row(label, "unet", spec) for label, spec in specs]


def _focal_tversky_rows(dataset: str | None) -> list[Row]:
    # The deeply supervised network's "FTL" row is FTL on the side outputs and TL on the last
    # (paper 003 §2.3); its DL/TL rows score every output with the same loss.
    # The baselines are the authors' own networks (newmodels.py unet / attn_unet, issue 17), not
    # MIScnn's: their U-Net is what reproduces the published U-Net + DL row.
    pyramid = "Attn U-Net + Multi-Input"
    return [
        Row("U-Net + DL", "unet-abraham", "dice"),
        Row("U-Net + TL", "unet-abraham", "tversky"),
        Row("U-Net + FTL", "unet-abraham", "focal_tversky"),
        Row("Attn U-Net + DL", "attention-unet-abraham", "dice"),
        Row(f"{pyramid} + DL", "pyramid-attention-unet", "dice"),
        Row(f"{pyramid} + TL", "pyramid-attention-unet", "tversky"),
        Row(f"{pyramid} + FTL", "pyramid-attention-unet", "deep_supervision"),
    ]


def _focusnet_rows(dataset: str | None) -> list[Row]:
    # Paper 002 Table 3 (2018 DSB) uses reduced widths for BCDU-Net/FocusNet/FocusNet++ (the
    # -small presets). Rows in Table 1's order; R2U-Net has no Table 3 row, so no reduced preset.
    # The networks are the authors' code's (TheFocusNetSeries): BCDU-Net with its one-direction
    # ConvLSTM (20,659,973 parameters = Table 2's 20.66 M), UNet++ as Nest_Net, Attn U-Net as
    # attn_unet, FocusNet++ as focusnetpp.py. The Attn U-Net has no reduced preset for Table 3.
    small = "-small" if dataset == "dsb2018" else ""
    return [
        Row("U-Net", "unet", "all_hybrid"),
        Row("R2U-Net", "r2u-net", "all_hybrid"),
        Row("BCDU-Net", f"bcdu-net{small}", "all_hybrid", {"convlstm": "backward"}),
        Row("UNet++", "unetplusplus", "all_hybrid"),
        Row("Attn U-Net", "attention-unet-kaul", "all_hybrid"),
        Row("FocusNet", f"focusnet{small}", "all_hybrid"),
        Row("FocusNet++", f"focusnetpp{small}", "all_hybrid"),
    ]


STUDIES: Registry[Study] = Registry("study")
for _study in (
    Study(
        "attention-se",
        TableSpec("paper 000 Table 3 (Focal SE)", TableName.se),
        "paper000",
        _attention_rows(AttentionStudy.se),
        datasets="drive, dsb2018, cvc-clinicdb",
    ),
    Study(
        "attention-ag",
        TableSpec("paper 000 Table 4 (Focal AG)", TableName.ag),
        "paper000",
        _attention_rows(AttentionStudy.ag),
        datasets="drive, dsb2018, cvc-clinicdb",
    ),
    Study(
        "losses",
        TableSpec("paper 000 Table 2 (losses)", TableName.losses),
        "paper000",
        _loss_rows,
        datasets="drive, dsb2018, cvc-clinicdb",
    ),
    Study(
        "focal-tversky",
        TableSpec("paper 003 Tables 1-2 (5-fold)", TableName.focal_tversky),
        "paper003",
        _focal_tversky_rows,
        folds=5,
        datasets="bus, isic2018",
    ),
    Study(
        "focusnet",
        TableSpec("paper 002 Tables 1-3", TableName.focusnet),
        "paper002",
        _focusnet_rows,
        datasets="isic2018, dsb2018",
    ),
):
    STUDIES.add(_study.name, _study)


def custom_study(models: Sequence[str], losses: Sequence[str]) -> Study:
    """The general form: every network × every loss, under paper 000's protocol by default."""
    return Study(
        "custom",
        TableSpec("models × losses"),
        "paper000",
        lambda _dataset: [Row(f"{m} + {lo}", m, lo) for m in models for lo in losses],
    )


def studies_help() -> str:
    """The studies, their rows and target tables, for ``focalbench ablate --help``."""
    lines = []
    for key in STUDIES.names():
        study = STUDIES.get(key)
        flag = (
            f"--attention {key.split('-')[1]}" if key.startswith("attention-") else f"--study {key}"
        )
        rows = "; ".join(
            f"{row.label} = {row.model + ' + ' + row.loss if row.model else 'the w0 = 0 run pruned at --threshold, then retrained'}"
            for row in study.rows(None)
        )
        folds = f", {study.folds} folds" if study.folds else ""
        lines.append(
            f"{flag} → {study.table.title}{folds}; datasets {study.datasets}; protocol "
            f"{study.protocol}. Rows: {rows}."
        )
    return "\n\n".join(lines)
