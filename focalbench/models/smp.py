"""Baselines from segmentation-models-pytorch, always randomly initialised (never a download)."""

from __future__ import annotations

from enum import Enum
from typing import Any

import torch

from focalbench.errors import FocalbenchError
from focalbench.models.base import SegmentationNet


class SmpArch(str, Enum):
    UNET = "unet"
    UNETPLUSPLUS = "unetplusplus"
    FPN = "fpn"
    DEEPLABV3PLUS = "deeplabv3plus"


class SmpNet(SegmentationNet):
    """``smp.create_model(arch, encoder, encoder_weights=None, classes=1)`` behind the focalbench API.

    ``encoder_weights`` is fixed to ``None``: the benchmark trains from scratch like the papers,
    and a test or a cluster node must never reach the network. ``size_multiple`` is the encoder's
    output stride (32, or 16 for DeepLabV3+'s dilated encoder). The encoder depth stays 5:
    smp keeps the unused stages of a shallower encoder as dead parameters.
    """

    def __init__(self, in_channels: int = 3, arch: SmpArch = SmpArch.UNET, encoder: str = "resnet34",
                 **smp_kwargs: Any) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        arch = SmpArch(arch)
        try:
            self.net = smp.create_model(arch.value, encoder_name=encoder, encoder_weights=None,
                                        in_channels=in_channels, classes=1, **smp_kwargs)
        except KeyError as exc:
            # smp lists every encoder in its message; keep the user's line short
            raise FocalbenchError(f"unknown smp encoder {encoder!r}; e.g. resnet18, resnet34, efficientnet-b0, mobilenet_v2 "
                                  "(see segmentation_models_pytorch.encoders.get_encoder_names())") from exc
        self.size_multiple = int(self.net.encoder.output_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.net(x)
