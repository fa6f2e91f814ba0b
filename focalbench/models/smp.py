"""smp baselines: random init, or encoder weights from a local file (never a download)."""

from __future__ import annotations

import os
import pickle
from enum import Enum
from pathlib import Path
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

    smp never downloads here: the benchmark trains from scratch like the papers, and a test or a
    cluster node must never reach the network. ``encoder_weights`` = the path of a saved encoder
    state dict (e.g. ImageNet weights saved once on a machine with internet) loads it into the
    encoder after construction; a hub name such as ``"imagenet"`` is a one-line error saying how
    to make that file (:func:`load_encoder_weights`). ``size_multiple`` is the encoder's
    output stride (32, or 16 for DeepLabV3+'s dilated encoder). The encoder depth stays 5:
    smp keeps the unused stages of a shallower encoder as dead parameters.
    """

    def __init__(
        self,
        in_channels: int = 3,
        arch: SmpArch = SmpArch.UNET,
        encoder: str = "resnet34",
        encoder_weights: str | None = None,
        **smp_kwargs: Any,
    ) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        arch = SmpArch(arch)
        try:
            self.net = smp.create_model(
                arch.value,
                encoder_name=encoder,
                encoder_weights=None,
                in_channels=in_channels,
                classes=1,
                **smp_kwargs,
            )
        except KeyError as exc:
            # smp lists every encoder in its message; keep the user's line short
            raise FocalbenchError(
                f"unknown smp encoder {encoder!r}; e.g. resnet18, resnet34, efficientnet-b0, mobilenet_v2 "
                "(see segmentation_models_pytorch.encoders.get_encoder_names())"
            ) from exc
        self.size_multiple = int(self.net.encoder.output_stride)
        if encoder_weights is not None:
            load_encoder_weights(self.net.encoder, encoder, encoder_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.net(x)


def load_encoder_weights(encoder: torch.nn.Module, name: str, weights: str | os.PathLike) -> None:
    """Load a saved state dict (a ``.pth``/``.pt`` file, or a folder holding exactly one whose
    name contains the encoder's) into ``encoder``. A first convolution saved for 3 input channels
    is summed over them for a 1-channel network (the channels of a grey image are equal)."""
    path = Path(weights).expanduser()
    if not path.exists():
        make = (
            'python -c "import torch, segmentation_models_pytorch as smp; '
            f"torch.save(smp.encoders.get_encoder('{name}', weights='imagenet').state_dict(), "
            f"'{name}.pth')\""
        )
        raise FocalbenchError(
            f"model.encoder_weights={str(weights)!r} is not a file; focalbench never downloads "
            f"weights: on a machine with internet run {make}, copy {name}.pth here and pass "
            f"--param model.encoder_weights=/path/{name}.pth"
        )
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in {".pth", ".pt"} and name in p.name)
        if len(files) != 1:
            raise FocalbenchError(
                f"{str(path)!r} holds {len(files)} .pth/.pt files named for {name!r}; "
                "pass the file itself with --param model.encoder_weights=FILE"
            )
        path = files[0]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise FocalbenchError(
            f"cannot read encoder weights {str(path)!r} ({type(exc).__name__}); "
            "save them with torch.save(encoder.state_dict(), FILE)"
        ) from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = encoder.state_dict()
    for key, value in list(state.items()):
        target = own.get(key)
        grey_input = target is not None and value.ndim == 4 and target.shape[1] == 1
        if grey_input and value.shape[1] != 1:
            state[key] = value.sum(dim=1, keepdim=True)
    try:
        encoder.load_state_dict(state)  # smp's encoders drop a classifier head (fc.*) themselves
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise FocalbenchError(
            f"{str(path)!r} does not fit encoder {name!r} ({first[:120]}); "
            f"save the state dict of smp's {name!r} encoder"
        ) from None
