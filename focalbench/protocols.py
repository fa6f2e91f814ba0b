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
from dataclasses import dataclass, field
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
    lr_t = lr / (1 + lr_decay · t) with t the optimiser step count.
    """

    constant = "constant"
    plateau = "plateau"
    inverse_time = "inverse_time"


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
    """Which weights the final test uses: lowest validation loss (``best``) or the final ones."""

    best = "best"
    last = "last"


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
    early_stopping: int | None = None
    test_checkpoint: Checkpoint = Checkpoint.best
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


_register(Protocol(
    name="paper000",
    source="Yeung et al., Focal Attention Networks, ISBI 2022, §2.4",
    optimizer=Optimizer.adam, lr=1e-3,
    schedule=Schedule.plateau, plateau_factor=0.1, plateau_patience=25,
    early_stopping=50,
    # The paper gives no epoch cap (training ends by early stopping); 500 bounds a run.
    batch_size=1, epochs=500,
    normalization=Normalization.zscore_image, augmentation=MISCNN_AUGMENTATION,
    init=Init.xavier_uniform,
))
_register(Protocol(
    name="paper001",
    source="Kaul et al., FocusNet, ISBI 2019, §3.2",
    optimizer=Optimizer.adam, lr=1e-3,
    schedule=Schedule.plateau, plateau_factor=0.5, plateau_patience=5, plateau_threshold=1e-3,
    batch_size=8, epochs=80,
    normalization=Normalization.zscore_dataset, augmentation=ZOOM_FLIP_AUGMENTATION,
))
_register(Protocol(
    name="paper002",
    source="Kaul et al., FocusNet++, ISBI 2021, §3",
    # The "carefully constructed learning rate schedule" is not given: Adam 1e-3, constant.
    optimizer=Optimizer.adam, lr=1e-3,
    batch_size=8, epochs=50,
    normalization=Normalization.unit, augmentation=None,
))
_register(Protocol(
    name="paper003",
    source="Abraham & Khan, Focal Tversky loss, ISBI 2019, §3",
    optimizer=Optimizer.sgd, lr=0.01, momentum=0.9,
    schedule=Schedule.inverse_time, lr_decay=1e-6,
    # ISIC values; BUS (100 epochs, batch 16) comes from the dataset's paper settings.
    batch_size=8, epochs=50,
    # Keras Adam/SGD code of the paper feeds raw [0, 1]-scaled images.
    normalization=Normalization.unit, augmentation=None,
    init=Init.xavier_normal,
))
_register(Protocol(
    name="smoke",
    source="focalbench: a tiny CPU recipe for tests and the Quick start",
    optimizer=Optimizer.adam, lr=1e-2,
    schedule=Schedule.plateau, plateau_factor=0.5, plateau_patience=2,
    batch_size=4, epochs=5,
    normalization=Normalization.zscore, augmentation=SMOKE_AUGMENTATION,
    precision=Precision.fp32, tiny_model=True,
))


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
    resolved = dataclasses.replace(
        protocol, **{k: _coerce(k, v) for k, v in changes.items()}
    )
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
    if name == "size":
        if isinstance(value, int):
            value = (value, value)
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value)):
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
    if problems:
        raise FocalbenchError(f"protocol {p.name!r}: {'; '.join(problems)}; fix the --param/--epochs value")


def _plain(obj: Any) -> Any:
    """Enums → values, tuples → lists: a JSON-ready view of a protocol."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
