"""The papers' training recipes as named, typed presets (+ ``smoke``, a tiny CPU recipe).

A :class:`Protocol` holds every default of a recipe in plain sight: optimiser, learning rate and
schedule, early stopping, batch size, epochs, input normalisation, augmentation, initialisation
and which checkpoint is tested. The working size and the split rule are dataset facts and come
from :func:`focalbench.datasets.paper_settings` unless the protocol or the user fixes them. :func:`resolve` merges, in increasing priority: the protocol, the dataset's per-paper
settings, ``RunConfig.overrides`` (``--param KEY=VALUE``) and ``RunConfig.epochs``.

Sources (the papers in ``../shared/papers``):

* ``paper000`` — Yeung et al., ISBI 2022, §2.4: Adam 1e-3, ReduceLROnPlateau ×0.1 after 25
  epochs, EarlyStopping after 50, batch 1, Xavier init, z-score input, augmentation "scaling,
  rotation, mirroring, elastic deformation and brightness" (MIScnn/batchgenerators defaults).
* ``paper001`` — Kaul et al., ISBI 2019, §3.2: Adam (Keras default lr 1e-3), plateau ×0.5 after
  5 epochs with min-delta 0.001, ≤80 epochs, batch 8, best-validation weights, z-score input,
  random zooms and flips.
* ``paper002`` — Kaul et al., ISBI 2021, §3: batch 8, ≤50 epochs, [0, 1] input, no augmentation,
  best-validation weights, no early stopping.
* ``paper003`` — Abraham & Khan, ISBI 2019, §3: SGD momentum 0.9, lr 0.01 decaying by 1e-6,
  no augmentation; ISIC 50 epochs batch 8, BUS 100 epochs batch 16 (per-dataset fields come from
  ``paper_settings``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any

from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError
from focalbench.registry import Registry


class Optimizer(str, Enum):
    adam = "adam"
    sgd = "sgd"


class Schedule(str, Enum):
    """How the learning rate moves.

    ``plateau``: multiply by ``plateau_factor`` when the validation loss has not improved by more
    than ``plateau_threshold`` (absolute) for ``plateau_patience`` epochs (Keras
    ``ReduceLROnPlateau``). ``inverse_time``: Keras' legacy ``decay`` argument,
    lr_t = lr / (1 + lr_decay · t) with t the optimiser step count. ``steps``: piecewise constant
    per epoch, ``lr`` until the first of ``lr_steps`` = ((E, lr_E), ...), then lr_E from epoch E
    (1-based) on — a Keras ``LearningRateScheduler`` whose function returns a constant per range.
    """

    constant = "constant"
    plateau = "plateau"
    inverse_time = "inverse_time"
    steps = "steps"


class Normalization(str, Enum):
    """Input scaling: ``zscore`` (x − mean) / std per image and channel; ``zscore_image`` the same
    over all channels of an image together (MIScnn's z-score, which paper 000 used: it keeps the
    colour balance between channels); ``zscore_dataset`` one mean and std per channel over every
    pixel of the training split (paper 001: "subtracting the mean pixel value for the respective
    datasets and dividing by the standard deviation"; the training split only, so validation and
    test images do not shape the input scaling); ``unit`` x / 255."""

    zscore = "zscore"
    zscore_image = "zscore_image"
    zscore_dataset = "zscore_dataset"
    unit = "unit"


class Checkpoint(str, Enum):
    """Which weights the final test uses: the ``monitor``'s best epoch (``best``) or the final
    ones (``last``)."""

    best = "best"
    last = "last"


class Monitor(str, Enum):
    """What makes an epoch the best one (Keras ``ModelCheckpoint(monitor=...)``).

    ``val_loss``: the lowest validation loss. ``val_soft_dice``: the highest validation soft Dice
    of the final output, (2·Σ g p + 1) / (Σ g + Σ p + 1) over each flattened validation batch of
    ``batch_size`` images, image-weighted mean over the batches — Keras' ``val_final_dsc`` of
    paper 003's code (focal-tversky-unet ``losses.py:8-14``, ``isic_train.py:68``). Early
    stopping and the plateau schedule always watch the validation loss.
    """

    val_loss = "val_loss"
    val_soft_dice = "val_soft_dice"


class ScoreSize(str, Enum):
    """Where the test predictions are scored. ``working``: at the training size, against the
    resized masks. ``native``: each thresholded prediction resized back to its image's native size
    (with the ``resize`` rule's mask interpolation) and scored against the original mask, as
    paper 003's code (``bus_train.py:105-109``) and MIScnn's ``predict`` (``Resize``
    postprocessing) do. Both are written; ``native`` runs keep the working-size score beside."""

    working = "working"
    native = "native"


class Resize(str, Enum):
    """How images and masks reach the working size (docs/datasets.md).

    ``area``: images by pixel area when shrinking (anti-aliased), bilinear when enlarging; masks
    nearest. ``nearest``: ``cv2.INTER_NEAREST`` for images and masks (paper 003's code,
    ``bus_train.py:63-64``). ``miscnn``: MIScnn's ``Resize`` subfunction (batchgenerators,
    scikit-image): images by an order-3 spline, masks by linear interpolation thresholded at 0.5
    (``resize_segmentation`` with ``order_seg=1``), edge mode, no anti-aliasing.
    """

    area = "area"
    nearest = "nearest"
    miscnn = "miscnn"


class Init(str, Enum):
    """Weight initialisation of conv/linear kernels (biases zero). ``default`` keeps PyTorch's."""

    default = "default"
    xavier_uniform = "xavier_uniform"
    xavier_normal = "xavier_normal"


class Precision(str, Enum):
    """Autocast dtype on CUDA (losses always run in float32). CPU runs always use float32."""

    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


@dataclass(frozen=True)
class Augmentation:
    """Random augmentation drawn per sample, applied batched on the device (one ``grid_sample``).

    Defaults are MIScnn's ``Data_Augmentation`` (taken from nnU-Net/batchgenerators), which
    paper 000 used: each transform fires with probability ``p_per_sample``; mirroring flips each
    axis with probability 1/2; scaling s ~ U(scale); rotation θ ~ U(±rotation_deg); elastic
    displacement u = α · G_σ * U(−1, 1) per axis (α ~ U(elastic_alpha) px², σ ~ U(elastic_sigma)
    px); brightness multiplies intensities by b ~ U(brightness).
    """

    p_per_sample: float = 0.15
    mirror: bool = True
    scale: tuple[float, float] | None = (0.85, 1.25)
    rotation_deg: float | None = 15.0
    elastic_alpha: tuple[float, float] | None = (0.0, 900.0)
    elastic_sigma: tuple[float, float] = (9.0, 13.0)
    brightness: tuple[float, float] | None = (0.5, 2.0)


MISCNN_AUGMENTATION = Augmentation()
# Paper 001: "random zooms and flipping" (lung) — no rotation, elastic or intensity change.
ZOOM_FLIP_AUGMENTATION = Augmentation(
    p_per_sample=0.5, rotation_deg=None, elastic_alpha=None, brightness=None
)
# smoke works on 64×64 images: paper 000's elastic field (σ 9–13 px, ~15 px amplitude) would
# scramble them, so it keeps the affine, mirror and brightness parts only.
SMOKE_AUGMENTATION = Augmentation(p_per_sample=0.3, elastic_alpha=None)


@dataclass(frozen=True)
class Protocol:
    """One training recipe. ``size``/``split`` ``None`` = the dataset's per-paper setting."""

    name: str
    source: str
    optimizer: Optimizer
    lr: float
    batch_size: int
    epochs: int
    normalization: Normalization
    augmentation: Augmentation | None
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: Schedule = Schedule.constant
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    plateau_threshold: float = 1e-4  # Keras ReduceLROnPlateau's min_delta default
    lr_decay: float = 0.0
    lr_steps: tuple[tuple[int, float], ...] = ()
    early_stopping: int | None = None
    test_checkpoint: Checkpoint = Checkpoint.best
    monitor: Monitor = Monitor.val_loss
    score_size: ScoreSize = ScoreSize.working
    resize: Resize = Resize.area
    fov_only: bool = True  # count metrics inside the dataset's field of view (DRIVE), if it has one
    init: Init = Init.default
    precision: Precision = Precision.bf16
    tiny_model: bool = False
    size: tuple[int, int] | None = None
    split: str | None = None
    split_seed: int = 0
    hd95: bool = False  # opt-in final metric: exact EDTs per test image cost more than the counts

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def _register(protocol: Protocol) -> Protocol:
    PROTOCOLS.add(protocol.name, protocol)
    return protocol


_register(
    Protocol(
        name="paper000",
        source="Yeung et al., Focal Attention Networks, ISBI 2022, §2.4",
        optimizer=Optimizer.adam,
        lr=1e-3,
        schedule=Schedule.plateau,
        plateau_factor=0.1,
        plateau_patience=25,
        early_stopping=50,
        # The paper gives no epoch cap (training ends by early stopping); 500 bounds a run.
        batch_size=1,
        epochs=500,
        normalization=Normalization.zscore_image,
        augmentation=MISCNN_AUGMENTATION,
        init=Init.xavier_uniform,
        # MIScnn's Resize subfunction to the Table 1 size, and its predict(), which resizes the
        # prediction back to the original image (Resize.postprocessing). MIScnn has no field of view:
        # it scores whole images (Table 1's DRIVE 8.70 % foreground is the whole-image share).
        resize=Resize.miscnn,
        score_size=ScoreSize.native,
        fov_only=False,
    )
)
_register(
    Protocol(
        name="paper001",
        source="Kaul et al., FocusNet, ISBI 2019, §3.2",
        optimizer=Optimizer.adam,
        lr=1e-3,
        schedule=Schedule.plateau,
        plateau_factor=0.5,
        plateau_patience=5,
        plateau_threshold=1e-3,
        batch_size=8,
        epochs=80,
        normalization=Normalization.zscore_dataset,
        augmentation=ZOOM_FLIP_AUGMENTATION,
    )
)
_register(
    Protocol(
        name="paper002",
        source="Kaul et al., FocusNet++, ISBI 2021, §3",
        # The paper's "carefully constructed learning rate schedule" is the code's
        # LearningRateScheduler (focusnetpp.py:294-304): Keras passes the 0-based epoch index i,
        # 1e-4 for i <= 15, 1e-5 for i <= 25, 1e-6 for i <= 40, then 1e-7 — from 1-based epochs
        # 17, 27 and 42 on. Batch 8 is the paper's (the code has 4).
        optimizer=Optimizer.adam,
        lr=1e-4,
        schedule=Schedule.steps,
        lr_steps=((17, 1e-5), (27, 1e-6), (42, 1e-7)),
        batch_size=8,
        epochs=50,
        normalization=Normalization.unit,
        augmentation=None,
    )
)
_register(
    Protocol(
        name="paper003",
        source="Abraham & Khan, Focal Tversky loss, ISBI 2019, §3 and nabsabraham/focal-tversky-unet",
        optimizer=Optimizer.sgd,
        lr=0.01,
        momentum=0.9,
        schedule=Schedule.inverse_time,
        lr_decay=1e-6,
        # ISIC values; BUS (100 epochs, batch 16) comes from the dataset's paper settings.
        batch_size=8,
        epochs=50,
        # The code reads PNGs with plt.imread, i.e. [0, 1], and resizes them with INTER_NEAREST.
        normalization=Normalization.unit,
        augmentation=None,
        resize=Resize.nearest,
        init=Init.xavier_normal,
        monitor=Monitor.val_soft_dice,
        score_size=ScoreSize.native,
    )
)
_register(
    Protocol(
        name="smoke",
        source="focalbench: a tiny CPU recipe for tests and the Quick start",
        optimizer=Optimizer.adam,
        lr=1e-2,
        schedule=Schedule.plateau,
        plateau_factor=0.5,
        plateau_patience=2,
        batch_size=4,
        epochs=5,
        normalization=Normalization.zscore,
        augmentation=SMOKE_AUGMENTATION,
        precision=Precision.fp32,
        tiny_model=True,
    )
)


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.get(name)


def list_protocols() -> list[str]:
    return PROTOCOLS.names()


# Fields a user may not override: they name the recipe rather than set it.
_FIXED = {"name", "source"}


def overridable_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Protocol) if f.name not in _FIXED]


def resolve(config: RunConfig, settings: dict[str, Any] | None = None) -> Protocol:
    """The protocol of ``config`` after dataset settings, ``--param`` overrides and ``--epochs``.

    ``settings`` is :func:`focalbench.datasets.paper_settings` for the config's dataset and
    protocol; its keys that name protocol fields (``size``, ``split``, ``batch_size``, ...) fill
    or replace the protocol's, except a ``size``/``split`` the protocol itself fixes.
    """
    protocol = get_protocol(config.protocol)
    changes: dict[str, Any] = {}
    fields = set(overridable_fields())
    for key, value in (settings or {}).items():
        if key in fields and not (key in {"size", "split"} and getattr(protocol, key) is not None):
            changes[key] = value
    for key, value in config.overrides.items():
        if key not in fields:
            raise FocalbenchError(
                f"--param {key}={value!r}: {key!r} is not a protocol field; "
                f"choose from: {', '.join(sorted(fields))} (or model.KEY / loss.KEY)"
            )
        changes[key] = value
    if config.epochs is not None:
        changes["epochs"] = config.epochs
    resolved = dataclasses.replace(protocol, **{k: _coerce(k, v) for k, v in changes.items()})
    _check(resolved)
    return resolved


def _coerce(name: str, value: Any) -> Any:
    """Turn a parsed ``--param`` value into the type of protocol field ``name``."""
    hint = typing.get_type_hints(Protocol)[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None or (optional and isinstance(value, str) and value.lower() in {"none", "off"}):
        if not optional:
            raise FocalbenchError(f"--param {name}: a value is required (got none)")
        return None
    if name == "augmentation":
        if isinstance(value, Augmentation):
            return value
        if value is False:
            return None
        if value is True:
            return MISCNN_AUGMENTATION
        raise FocalbenchError("--param augmentation: use true (paper 000's augmentation) or none")
    base = next(a for a in args if a is not type(None)) if optional else hint
    if isinstance(base, type) and issubclass(base, Enum):
        try:
            return base(value)
        except ValueError:
            raise FocalbenchError(
                f"--param {name}={value!r}: choose from: {', '.join(m.value for m in base)}"
            ) from None
    if name == "lr_steps":
        return _lr_steps(value)
    if name == "size":
        if isinstance(value, int):
            value = (value, value)
        if not (
            isinstance(value, (list, tuple))
            and len(value) == 2
            and all(isinstance(v, int) for v in value)
        ):
            raise FocalbenchError(f"--param size={value!r}: write HxW, e.g. --param size=256x256")
        return (int(value[0]), int(value[1]))
    try:
        if base is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if base is int:
            if isinstance(value, bool) or float(value) != int(value):
                raise TypeError
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise FocalbenchError(f"--param {name}={value!r}: expected {getattr(base, '__name__', base)}")


def _lr_steps(value: Any) -> tuple[tuple[int, float], ...]:
    """``--param lr_steps=17:1e-5,27:1e-6`` (or pairs from Python) → ((17, 1e-5), (27, 1e-6))."""
    pairs = value
    if isinstance(value, str):
        pairs = [item.split(":") for item in value.split(",") if item.strip()]
    try:
        steps = tuple((int(epoch), float(lr)) for epoch, lr in pairs)
    except (TypeError, ValueError):
        raise FocalbenchError(
            f"--param lr_steps={value!r}: write EPOCH:LR pairs, "
            "e.g. --param lr_steps=17:1e-5,27:1e-6"
        ) from None
    return steps


def lr_at_epoch(p: Protocol, epoch: int) -> float:
    """The ``steps`` schedule's learning rate of 1-based ``epoch``: ``lr``, or the last of
    ``lr_steps`` whose start epoch has been reached."""
    lr = p.lr
    for start, value in p.lr_steps:
        if epoch >= start:
            lr = value
    return lr


def _check(p: Protocol) -> None:
    problems = []
    if p.batch_size < 1:
        problems.append("batch_size must be ≥ 1")
    if p.epochs < 1:
        problems.append("epochs must be ≥ 1")
    if not (math.isfinite(p.lr) and p.lr > 0):
        problems.append("lr must be > 0")
    if p.size is not None and min(p.size) < 1:
        problems.append("size must be positive")
    if p.early_stopping is not None and p.early_stopping < 1:
        problems.append("early_stopping must be ≥ 1 (or none)")
    starts = [start for start, _ in p.lr_steps]
    if starts != sorted(set(starts)) or any(s < 2 for s in starts):
        problems.append("lr_steps must start at increasing epochs ≥ 2")
    if any(not (math.isfinite(lr) and lr > 0) for _, lr in p.lr_steps):
        problems.append("every lr of lr_steps must be > 0")
    if p.schedule is Schedule.steps and not p.lr_steps:
        problems.append("schedule steps needs lr_steps, e.g. --param lr_steps=17:1e-5")
    if problems:
        raise FocalbenchError(
            f"protocol {p.name!r}: {'; '.join(problems)}; fix the --param/--epochs value"
        )


def _plain(obj: Any) -> Any:
    """Enums → values, tuples → lists: a JSON-ready view of a protocol."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- sources
# Where each field of each paper protocol comes from (issue 13's rule: a setting the paper's text
# states stands; where the text is silent or vague, the authors' public code decides; what
# neither fixes is a focalbench choice, said so). Code paths are relative to the repository
# named first in the entry; line numbers are of the snapshot read for docs/reproduction.md.
# "datasets.toml" = a per-dataset setting of [<dataset>.papers.<protocol>] that fills the field.
_F = "focalbench choice"
_MISCNN = "frankkramer-lab/MIScnn miscnn/"
_FTU = "nabsabraham/focal-tversky-unet "
FIELD_SOURCES: dict[str, dict[str, str]] = {
    "paper000": {
        "optimizer": "paper §2.4 (Adam)",
        "lr": "paper §2.4 (1e-3; MIScnn's default 1e-4, neural_network/model.py:64, is overridden)",
        "batch_size": "paper §2.4 (batch size 1)",
        "epochs": "no cap in paper or code (EarlyStopping ends a run); 500 bounds it: " + _F,
        "normalization": "paper §2.4 (z-score); whole image, all channels: "
        + _MISCNN
        + "processing/subfunctions/normalization.py:57-62",
        "augmentation": "paper §2.4 (scaling, rotation, mirroring, elastic, brightness); ranges and "
        "p = 0.15: " + _MISCNN + "processing/data_augmentation.py:40-52,146-166",
        "momentum": "n/a (Adam)",
        "weight_decay": "none in paper or code (Keras Adam)",
        "schedule": "paper §2.4 (ReduceLROnPlateau)",
        "plateau_factor": "paper §2.4 (×0.1)",
        "plateau_patience": "paper §2.4 (25 epochs)",
        "plateau_threshold": "paper silent; Keras ReduceLROnPlateau min_delta default 1e-4",
        "lr_decay": "n/a (plateau schedule)",
        "lr_steps": "n/a (plateau schedule)",
        "early_stopping": "paper §2.4 (EarlyStopping after 50 epochs)",
        "test_checkpoint": "paper silent, authors' code unpublished: best validation loss, " + _F,
        "monitor": "paper §2.4 (callbacks monitor the validation loss)",
        "score_size": "paper silent (DSC per image, §2.3); MIScnn predict() returns the prediction "
        "at the original size: " + _MISCNN + "processing/subfunctions/resize.py:76-95",
        "resize": "paper Table 1 sizes; MIScnn Resize (order 3 image, order 1 mask): "
        + _MISCNN
        + "processing/subfunctions/resize.py:44,62-65",
        "init": "paper §2.4 (Xavier; Keras glorot_uniform, the Conv2D default)",
        "fov_only": "paper silent (Table 1: DRIVE 8.70 % foreground = whole image, footnote: higher "
        "in the FOV); MIScnn's Sample holds image, segmentation and prediction only "
        "(data_loading/sample.py:42-64): whole images",
        "precision": "Keras code runs float32; bf16 autocast on CUDA is "
        + _F
        + " (--param precision=fp32 for the code's arithmetic)",
        "tiny_model": "paper widths (false)",
        "size": "datasets.toml ← paper Table 1 (DRIVE 512×512, 2018DSB 256×256, CVC 288×384)",
        "split": "datasets.toml ← paper §2.4 (80/20 development/test, development 80/20; DRIVE "
        "official 20/20, 16/4)",
        "split_seed": "paper silent (random partition): seed 0, " + _F,
        "hd95": "not reported by the paper (off)",
    },
    "paper001": {
        "optimizer": "paper §3.2 (Adam)",
        "lr": "paper §3.2 (Keras default learning rate, 1e-3)",
        "batch_size": "paper §3.2 (8)",
        "epochs": "paper §3.2 (maximum of 80 epochs)",
        "normalization": "paper §3.2 (dataset mean and standard deviation)",
        "augmentation": "paper §3.2 (random zooms and flipping, lung); ranges: " + _F,
        "momentum": "n/a (Adam)",
        "weight_decay": "paper silent: none, " + _F,
        "schedule": "paper §3.2 (reduce on plateau)",
        "plateau_factor": "paper §3.2 (by half)",
        "plateau_patience": "paper §3.2 (5 consecutive epochs)",
        "plateau_threshold": "paper §3.2 (epsilon 0.001)",
        "lr_decay": "n/a (plateau schedule)",
        "lr_steps": "n/a (plateau schedule)",
        "early_stopping": "paper §3.2 (none mentioned; runs for 80 epochs)",
        "test_checkpoint": "paper §3.2 (best model on the validation set saved)",
        "monitor": "paper §3.2 (validation loss monitored)",
        "score_size": "paper silent: working size (256×256), " + _F,
        "resize": "paper §3.2 (resized to 256×256; interpolation silent): area, " + _F,
        "init": "paper silent: PyTorch default, " + _F,
        "fov_only": "n/a (no dataset with a FOV)",
        "precision": "Keras code runs float32; bf16 autocast on CUDA is " + _F,
        "tiny_model": "paper widths (false)",
        "size": "datasets.toml ← paper §3.2 (256×256)",
        "split": "datasets.toml ← paper §3.2 (lung 80-20 train-validation; the 20 % halved into "
        "validation and test: " + _F + ")",
        "split_seed": "paper silent: seed 0, " + _F,
        "hd95": "not reported by the paper (off)",
    },
    "paper002": {
        "optimizer": "paper silent; chaitanya-kaul/TheFocusNetSeries focusnetpp.py:274 (Adam)",
        "lr": "paper: 'carefully constructed learning rate schedule'; focusnetpp.py:294-296 (1e-4 "
        "from the first epoch; the compile's 1e-3 is replaced before any step)",
        "batch_size": "paper §3 (eight; the code has 4, focusnetpp.py:66)",
        "epochs": "paper §3 (maximum of 50 epochs)",
        "normalization": "paper §3 (pixel values scaled to [0, 1])",
        "augmentation": "paper §3 (no data augmentation)",
        "momentum": "n/a (Adam)",
        "weight_decay": "paper silent; none in focusnetpp.py:274",
        "schedule": "focusnetpp.py:294-304 (LearningRateScheduler)",
        "plateau_factor": "n/a (steps schedule)",
        "plateau_patience": "n/a (steps schedule)",
        "plateau_threshold": "n/a (steps schedule)",
        "lr_decay": "n/a (steps schedule)",
        "lr_steps": "focusnetpp.py:294-302 (0-based epoch index ≤ 15: 1e-4, ≤ 25: 1e-5, ≤ 40: 1e-6, "
        "then 1e-7 → from 1-based epochs 17, 27, 42)",
        "early_stopping": "paper §3 (no early stopping)",
        "test_checkpoint": "paper §3 (best weights saved by monitoring the validation loss)",
        "monitor": "paper §3 (validation loss); focusnetpp.py:305",
        "score_size": "paper silent: working size (256×256), " + _F,
        "resize": "paper §3.1 ('anti-aliasing down-sampling'): area",
        "init": "paper silent; Keras defaults in focusnetpp.py (glorot_uniform); PyTorch default "
        "kept: " + _F,
        "fov_only": "n/a (no dataset with a FOV)",
        "precision": "Keras code runs float32; bf16 autocast on CUDA is " + _F,
        "tiny_model": "paper widths (false)",
        "size": "datasets.toml ← paper §3.1-3.2 (256×256)",
        "split": "datasets.toml ← paper §3.1 (ISIC 1815/259/520), §3.2 (DSB 540/130)",
        "split_seed": "paper: 'the train-validate-test data split is fixed' (not published): "
        "seed 0, " + _F,
        "hd95": "not reported by the paper (off)",
    },
    "paper003": {
        "optimizer": "paper §3 (stochastic gradient descent with momentum)",
        "lr": "paper §3 (0.01)",
        "batch_size": "paper §3 (ISIC 8; BUS 16 via datasets.toml); isic_train.py:35 has 16",
        "epochs": "paper §3 (ISIC 50; BUS 100 via datasets.toml)",
        "normalization": "paper silent; " + _FTU + "bus_train.py:58 (plt.imread of a PNG: [0, 1])",
        "augmentation": "paper §3 ('we do not augment our datasets')",
        "momentum": "paper §3 (momentum); 0.9: bus_train.py:41, isic_train.py:39",
        "weight_decay": "none in the code (bus_train.py:41)",
        "schedule": "paper §3 ('decays by 1e-6 on every epoch', form vague); Keras decay, per step: "
        "isic_train.py:39 (bus_train.py:41 has none; either way < 0.1 % of lr)",
        "plateau_factor": "n/a (inverse-time schedule)",
        "plateau_patience": "n/a (inverse-time schedule)",
        "plateau_threshold": "n/a (inverse-time schedule)",
        "lr_decay": "paper §3 (1e-6); isic_train.py:39",
        "lr_steps": "n/a (inverse-time schedule)",
        "early_stopping": "none: isic_train.py:66,80 (EarlyStopping built, not passed to fit)",
        "test_checkpoint": "paper silent; isic_train.py:114, bus_train.py:118 (load_weights of "
        "the ModelCheckpoint file before the scores printed last)",
        "monitor": "paper silent; isic_train.py:68-70 (monitor='val_final_dsc', mode='max'; "
        "bus_train.py:77 'val_dsc' for the single-output U-Net; the metric is "
        "losses.py:8-14, soft Dice, smooth 1)",
        "score_size": "paper silent; bus_train.py:105-109, isic_train.py:124-131 (prediction "
        "resized to the original mask, INTER_NEAREST, > 0.5)",
        "resize": "paper §3 (resampled to 128×128 / 192×256); bus_train.py:63-64 (INTER_NEAREST for "
        "images and masks; the ISIC script reads pre-resized files, isic_train.py:43-55)",
        "init": "paper silent; newmodels.py:33 (kinit = 'glorot_normal'; Keras' is truncated, "
        "torch's xavier_normal_ is not)",
        "fov_only": "n/a (no dataset with a FOV)",
        "precision": "Keras code runs float32; bf16 autocast on CUDA is " + _F,
        "tiny_model": "paper widths (false)",
        "size": "datasets.toml ← paper §3 (BUS 128×128, ISIC 192×256)",
        "split": "datasets.toml ← paper §3 (75-25 train-test split, '5-fold cross validation'); "
        "bus_train.py:68-70,87 (train_test_split test_size=0.25, validation_split=0.15) "
        "→ keras-25-15-x5",
        "split_seed": "code unseeded (train_test_split without random_state): seeds 0-4 by fold, "
        + _F,
        "hd95": "not reported by the paper (off)",
    },
}


def field_sources(name: str) -> dict[str, str]:
    """Field → source of a paper protocol (empty for ``smoke``): see ``FIELD_SOURCES``."""
    get_protocol(name)
    return dict(FIELD_SOURCES.get(name, {}))


def ledger_rows(name: str) -> list[str]:
    """docs/reproduction.md's table rows of a paper protocol: ``| field | value | source |``, the
    value as the protocol holds it (dataset settings shown as the sources say)."""
    values = get_protocol(name).to_dict()
    shown = {
        k: "per dataset" if v is None and k in {"size", "split"} else _ledger_value(v)
        for k, v in values.items()
    }
    return [f"| `{key}` | {shown[key]} | {text} |" for key, text in field_sources(name).items()]


def _ledger_value(value: Any) -> str:
    """A protocol value in a Markdown cell: ``none``, ``-`` for an empty list, pairs as E:lr."""
    if value is None:
        return "none"
    if isinstance(value, dict):  # an Augmentation
        return ", ".join(f"{k}={_ledger_value(v)}" for k, v in value.items())
    if isinstance(value, list) and value and isinstance(value[0], list):  # lr_steps
        return ", ".join(f"{epoch}:{lr:g}" for epoch, lr in value)
    if isinstance(value, list):
        return str(value) if value else "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
