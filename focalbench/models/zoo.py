"""The registry of named networks: each name is a configuration of one parametrised family."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from focalbench.errors import FocalbenchError
from focalbench.models.abraham import AbrahamAttentionUNet, AbrahamUNet
from focalbench.models.base import check_input_size
from focalbench.models.bcdunet import BCDUNet, ConvLSTMForm
from focalbench.models.blocks import GateForm
from focalbench.models.focusnet import FocusNet
from focalbench.models.focusnetpp import FocusNetPP, Head
from focalbench.models.keras import KERAS_BN_EPS, KERAS_BN_MOMENTUM
from focalbench.models.pyramid import GateSource, PyramidAttentionUNet
from focalbench.models.smp import SmpArch, SmpNet
from focalbench.models.unet import Attention, Block, UNet
from focalbench.models.unetplusplus import UNetPlusPlus
from focalbench.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """A registered network: ``factory(in_channels, **fixed, **defaults, **user params)``.

    ``fixed`` are the preset's identity (e.g. ``attention=se`` for ``use-net``) and cannot be
    overridden; ``defaults`` can. ``tiny_params`` make the network tiny for CPU tests and the
    ``smoke`` protocol.
    """

    factory: Callable[..., nn.Module]
    description: str
    paper: str
    defaults: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    tiny_params: dict[str, Any] = field(default_factory=dict)
    deep_supervision: bool = False

    def allowed(self) -> list[str]:
        params = inspect.signature(self.factory).parameters.values()
        return [
            p.name
            for p in params
            if p.kind is not p.VAR_KEYWORD and p.name not in ("in_channels", *self.fixed)
        ]


MODELS: Registry[ModelSpec] = Registry("model")

PAPER_000 = "Yeung et al. 2022, Focal Attention Networks (ISBI), paper 000"
PAPER_003 = (
    "Abraham & Khan 2019, Focal Tversky loss with improved Attention U-Net (ISBI), paper 003"
)
# Every paper network's reference is Keras code: Keras' BatchNorm ε and momentum (0.99 = PyTorch 0.01)
_KERAS_BN = {"bn_eps": KERAS_BN_EPS, "bn_momentum": KERAS_BN_MOMENTUM}

_UNET_TINY = {"width": 8}
MODELS.add(
    "unet",
    ModelSpec(
        UNet,
        "U-Net of paper 000 (MIScnn standard: 32→512 filters, depth 4, instance norm)",
        PAPER_000,
        defaults={"width": 32, "depth": 4, **_KERAS_BN},
        fixed={"attention": Attention.NONE},
        tiny_params=_UNET_TINY,
    ),
)
MODELS.add(
    "unet-abraham",
    ModelSpec(
        AbrahamUNet,
        "paper 003's U-Net baseline as coded (newmodels.unet: BN in the encoder only, one conv at decoder level 1)",
        PAPER_003,
        defaults={"width": 32, **_KERAS_BN},
        tiny_params=_UNET_TINY,
    ),
)
_ATTN_TINY = {"widths": [8, 8, 8, 8, 16], "gate_widths": [8, 8, 8], "up_widths": [8, 8, 8, 8]}
MODELS.add(
    "attention-unet-abraham",
    ModelSpec(
        AbrahamAttentionUNet,
        "paper 003's Attn U-Net baseline as coded (newmodels.attn_unet: widths 32/32/64/64/128, "
        "3 gates, no decoder convs)",
        PAPER_003,
        defaults={
            "widths": [32, 32, 64, 64, 128],
            "gate_widths": [128, 64, 32],
            "up_widths": [32, 64, 32, 32],
            **_KERAS_BN,
        },
        tiny_params=_ATTN_TINY,
    ),
)
for _focal, _init in (("", None), ("focal-", 1.0)):
    MODELS.add(
        f"{_focal}use-net",
        ModelSpec(
            UNet,
            f"U-Net with {_focal.replace('-', ' ')}SE blocks (r=8) at 9 positions: 1-4 encoder, 5 bottleneck, 6-9 decoder",
            PAPER_000,
            defaults={
                "width": 32,
                "depth": 4,
                "positions": None,
                "focal_init": _init,
                "se_reduction": 8,
                **_KERAS_BN,
            },
            fixed={"attention": Attention.SE},
            tiny_params=_UNET_TINY,
        ),
    )
    MODELS.add(
        f"{_focal}attention-unet",
        ModelSpec(
            UNet,
            f"U-Net with {_focal.replace('-', ' ')}attention gates on the 4 skips (1 = deepest; MIScnn form, or gate_form=oktay)",
            PAPER_000,
            defaults={
                "width": 32,
                "depth": 4,
                "positions": None,
                "focal_init": _init,
                "gate_form": GateForm.MISCNN,
                **_KERAS_BN,
            },
            fixed={"attention": Attention.AG},
            tiny_params=_UNET_TINY,
        ),
    )
MODELS.add(
    "pyramid-attention-unet",
    ModelSpec(
        PyramidAttentionUNet,
        "improved Attention U-Net: input pyramid, 3 gates, 4 deeply supervised outputs (full last)",
        PAPER_003,
        defaults={
            "width": 32,
            "gate3_source": GateSource.UP1,
            "positions": None,
            "focal_init": None,
            **_KERAS_BN,
        },
        tiny_params=_UNET_TINY,
        deep_supervision=True,
    ),
)
PAPER_001 = "Kaul, Manandhar & Pears 2019, FocusNet (ISBI), paper 001"
PAPER_002 = "Kaul et al. 2021, FocusNet++ (ISBI), paper 002"
for _suffix, _width, _note in (
    ("", 32, "filters 32→512"),
    ("-small", 16, "half the filters, the reduced 2018 DSB network of paper 002 Table 3"),
):
    MODELS.add(
        f"focusnet{_suffix}",
        ModelSpec(
            FocusNet,
            f"FocusNet: SE-residual encoder gated by a second encoder-decoder's sigmoid maps ({_note})",
            PAPER_001,
            defaults={"width": _width, "dropout": 0.2, "se_reduction": 16, **_KERAS_BN},
            tiny_params={"width": 8},
        ),
    )
# FocusNet++: the authors' code (focusnetpp.py) is the default, the network paper 002 measured;
# -small halves its widths (156 / 2 = 78 rounded up to 80: 4 groups must split it); -paper is
# the paper's text (widths 32..256, SE in every block, its side-output head).
_PP_TINY = {"widths": [8, 8, 16, 16, 16], "stem": 8, "blocks": [1, 1, 1, 1, 1]}
for _suffix, _widths, _stem, _note in (
    ("", [48, 96, 156, 256, 512], 32, "the authors' code: widths 48/96/156/256/512, no SE"),
    (
        "-small",
        [24, 48, 80, 128, 256],
        16,
        "the code's network at half width, for the reduced 2018 DSB network of paper 002 Table 3",
    ),
):
    MODELS.add(
        f"focusnetpp{_suffix}",
        ModelSpec(
            FocusNetPP,
            f"FocusNet++: ResGANet blocks, 4 filter groups, additive skips, fused side outputs ({_note})",
            PAPER_002,
            defaults={
                "widths": _widths,
                "stem": _stem,
                "blocks": [1, 3, 3, 3, 2],
                "se": False,
                "head": Head.CODE,
                "dropout": 0.5,
                **_KERAS_BN,
            },
            tiny_params=_PP_TINY,
        ),
    )
MODELS.add(
    "focusnetpp-paper",
    ModelSpec(
        FocusNetPP,
        "FocusNet++ as the paper's text describes it: widths 32/64/128/192/256, SE (r=16) in every ResGANet, "
        "a side head at every scale",
        PAPER_002,
        defaults={
            "widths": [32, 64, 128, 192, 256],
            "stem": None,
            "blocks": [1, 3, 3, 3, 2],
            "se": True,
            "se_reduction": 16,
            "head": Head.PAPER,
            "dropout": 0.5,
            **_KERAS_BN,
        },
        tiny_params={"widths": [8, 8, 16, 16, 16], "blocks": [1, 1, 1, 1, 1]},
    ),
)
# Paper 002's baselines as its authors' repository (TheFocusNetSeries models.py) builds them.
MODELS.add(
    "attention-unet-kaul",
    ModelSpec(
        AbrahamAttentionUNet,
        "paper 002's Attn U-Net baseline as coded (TheFocusNetSeries attn_unet: widths 32→512, "
        "gates F_int 256/128/64, no decoder convs)",
        PAPER_002,
        defaults={
            "widths": [32, 64, 128, 256, 512],
            "gate_widths": [256, 128, 64],
            "up_widths": [256, 128, 64, 32],
            **_KERAS_BN,
        },
        tiny_params=_ATTN_TINY,
    ),
)
MODELS.add(
    "unetplusplus",
    ModelSpec(
        UNetPlusPlus,
        "UNet++ as paper 002's code builds it (Nest_Net: nested U-Net 32→512, ELU, dropout 0.5)",
        "Zhou et al. 2018, UNet++ (DLMIA); baseline of paper 002",
        defaults={"width": 32, "dropout": 0.5},
        tiny_params={"width": 8},
    ),
)
# Paper 002's baselines [9] and [10]. R2U-Net has no -small preset: paper 002 Table 3 (2018 DSB)
# has no R2U-Net row to size it by. bcdu-net-small halves the widths: the public code's network at
# width 32 has 5.17 M parameters against Table 3's 5.22 M (models/bcdunet.py).
MODELS.add(
    "r2u-net",
    ModelSpec(
        UNet,
        "R2U-Net: U-Net of recurrent residual conv units (RRCNN, t=2), filters 32→512, depth 4",
        "Alom et al. 2018, R2U-Net (arXiv 1802.06955); baseline [9] of paper 002",
        defaults={"width": 32, "depth": 4, "recurrence": 2, **_KERAS_BN},
        fixed={"attention": Attention.NONE, "block": Block.RECURRENT_RESIDUAL},
        tiny_params=_UNET_TINY,
    ),
)
for _suffix, _width, _note in (
    ("", 64, "filters 64→512"),
    ("-small", 32, "half the filters, the reduced 2018 DSB network of paper 002 Table 3"),
):
    MODELS.add(
        f"bcdu-net{_suffix}",
        ModelSpec(
            BCDUNet,
            f"BCDU-Net: U-Net with 3 densely connected bottleneck blocks and bidirectional ConvLSTM skip fusion ({_note})",
            "Azad et al. 2019, BCDU-Net (ICCV workshops); baseline [10] of paper 002",
            defaults={
                "width": _width,
                "depth": 3,
                "dense_blocks": 3,
                "convlstm": ConvLSTMForm.BIDIRECTIONAL,
                "dropout": 0.5,
                **_KERAS_BN,
            },
            tiny_params={"width": 8},
        ),
    )

_SMP_TINY = {"encoder": "resnet18"}
for _arch, _extra, _label in (
    (SmpArch.UNET, {}, "smp-unet"),
    (SmpArch.UNETPLUSPLUS, {}, "smp-unetplusplus"),
    (SmpArch.FPN, {}, "smp-fpn"),
    (SmpArch.DEEPLABV3PLUS, {}, "smp-deeplabv3plus"),
    (SmpArch.UNET, {"decoder_attention_type": "scse"}, "smp-unet-scse"),
):
    MODELS.add(
        _label,
        ModelSpec(
            SmpNet,
            f"segmentation-models-pytorch {_arch.value}{' with scSE decoder attention' if _extra else ''}, "
            "random init (encoder_weights=None)",
            "Iakubovskii, segmentation-models-pytorch (baseline)",
            defaults={"encoder": "resnet34"},
            fixed={"arch": _arch, **_extra},
            tiny_params=_SMP_TINY,
        ),
    )


def list_models() -> list[str]:
    """Every registered network name."""
    return MODELS.names()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def model_info(name: str) -> dict[str, Any]:
    """``name``, ``description``, ``paper``, ``defaults``, ``tiny_params``, ``deep_supervision``."""
    spec = MODELS.get(name)
    return {
        "name": name,
        "description": spec.description,
        "paper": spec.paper,
        "defaults": {k: _jsonable(v) for k, v in spec.defaults.items()},
        "tiny_params": dict(spec.tiny_params),
        "deep_supervision": spec.deep_supervision,
    }


#: Parameters that take a list of integers, with the example a user error shows.
_INT_LISTS = {
    "positions": "[2,6,9]",
    "blocks": "[1,3,3,3,2]",
    "widths": "[48,96,156,256,512]",
    "gate_widths": "[128,64,32]",
    "up_widths": "[32,64,32,32]",
}
#: Integer parameters that must be at least 1.
_POSITIVE_INTS = ("width", "depth", "se_reduction", "out_channels", "dense_blocks")
#: Integer parameters that must be at least 0.
_NON_NEGATIVE_INTS = ("recurrence",)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coerce(name: str, key: str, value: Any, default: Any) -> Any:
    """Check a user's value and turn CLI strings into the enum the factory's default has.

    A wrong value is a :class:`FocalbenchError` naming the fix, not a ``TypeError`` or a
    ``ZeroDivisionError`` from deep inside the network's constructor.
    """
    if isinstance(default, Enum) and not isinstance(value, Enum):
        try:
            return type(default)(value)
        except ValueError:
            choices = ", ".join(m.value for m in type(default))
            raise FocalbenchError(
                f"model {name!r}: {key}={value!r} is not one of {choices}"
            ) from None
    if (
        key in _INT_LISTS
        and value is not None
        and not (isinstance(value, (list, tuple)) and all(_is_int(v) for v in value))
    ):
        raise FocalbenchError(
            f"model {name!r}: {key}={value!r} is not a list of integers; write e.g. --param model.{key}={_INT_LISTS[key]}"
        )
    if key in _POSITIVE_INTS and not (_is_int(value) and value >= 1):
        raise FocalbenchError(f"model {name!r}: {key}={value!r} must be an integer >= 1")
    if key in _NON_NEGATIVE_INTS and not (_is_int(value) and value >= 0):
        raise FocalbenchError(f"model {name!r}: {key}={value!r} must be an integer >= 0")
    if (
        key == "focal_init"
        and value is not None
        and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0)
    ):
        raise FocalbenchError(
            f"model {name!r}: focal_init={value!r} must be a number >= 0 (the Focal weight w >= 0), or None for plain modules"
        )
    if key == "bn_eps" and not (_is_number(value) and value > 0):
        raise FocalbenchError(
            f"model {name!r}: bn_eps={value!r} must be a number > 0 (Keras' 1e-3, PyTorch's 1e-5)"
        )
    if key == "bn_momentum" and not (_is_number(value) and 0 < value <= 1):
        raise FocalbenchError(
            f"model {name!r}: bn_momentum={value!r} must be a number in (0, 1], the weight of the new batch "
            "(PyTorch's convention: Keras' momentum 0.99 is 0.01 here)"
        )
    if key == "se" and not isinstance(value, bool):
        raise FocalbenchError(f"model {name!r}: se={value!r} must be true or false")
    if key == "stem" and value is not None and not (_is_int(value) and value >= 1):
        raise FocalbenchError(
            f"model {name!r}: stem={value!r} must be an integer >= 1, or None for the first level's width"
        )
    if key == "dropout" and not (
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1
    ):
        raise FocalbenchError(f"model {name!r}: dropout={value!r} must be a number in [0, 1)")
    return value


def build_model(name: str, in_channels: int = 3, **params: Any) -> nn.Module:
    """Build the registered network ``name`` for ``in_channels`` input channels.

    ``params`` override the preset's defaults (``model_info(name)["defaults"]``); an unknown
    parameter raises :class:`FocalbenchError` listing the valid ones.
    """
    spec = MODELS.get(name)
    allowed = spec.allowed()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise FocalbenchError(
            f"model {name!r} takes no parameter {', '.join(unknown)}; valid: {', '.join(allowed)}"
        )
    merged = {**spec.defaults, **params}
    factory_defaults = {
        p.name: p.default for p in inspect.signature(spec.factory).parameters.values()
    }
    merged = {
        k: _coerce(name, k, v, spec.defaults.get(k, factory_defaults.get(k)))
        for k, v in merged.items()
    }
    return spec.factory(in_channels=in_channels, **spec.fixed, **merged)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (Focal scalars included)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_gflops(model: nn.Module, size: Sequence[int], in_channels: int = 3) -> float:
    """Forward GFLOPs for one ``(1, in_channels, H, W)`` input, counted by ``FlopCounterMode``.

    FLOPs, not multiply-adds: a conv or matmul counts 2 per multiply-add; normalisations,
    activations, pooling and element-wise products are not counted (as in most published
    tables). The count runs on a meta-device copy, so it costs no real compute.
    """
    meta = copy.deepcopy(model).to("meta").eval()
    x = torch.empty(1, in_channels, *size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(x)
    return counter.get_total_flops() / 1e9


def model_summary(
    name: str, size: Sequence[int] = (256, 256), in_channels: int = 3, **params: Any
) -> dict[str, Any]:
    """``{"name", "params", "gflops", "size", "description"}`` for one network, built on the meta device.

    A ``size`` the network cannot take gives ``gflops: None`` and the reason under ``"error"``.
    """
    with torch.device("meta"):
        model = build_model(name, in_channels=in_channels, **params)
    summary = {
        "name": name,
        "params": count_parameters(model),
        "gflops": None,
        "size": list(size),
        "description": MODELS.get(name).description,
    }
    try:
        check_input_size(model, size)
    except FocalbenchError as exc:
        return {**summary, "error": str(exc)}
    return {**summary, "gflops": round(count_gflops(model, size, in_channels), 4)}
