"""Network registry and the API the engine trains against.

    >>> from focalbench.models import build_model, focal_weights
    >>> net = build_model("focal-use-net", positions=[2, 6, 9], focal_init=0.0)
    >>> focal_weights(net)
    {'se2': 0.0, 'se6': 0.0, 'se9': 0.0}

Every network takes ``(N, C, H, W)`` floats and returns logits ``(N, 1, H, W)``, or a list of
logits with the full-resolution output last when ``model.deep_supervision`` is true.
"""

from __future__ import annotations

from focalbench.models.base import (
    SegmentationNet,
    check_input_size,
    clamp_focal_weights_,
    focal_weights,
)
from focalbench.models.zoo import (
    MODELS,
    ModelSpec,
    build_model,
    count_gflops,
    count_parameters,
    list_models,
    model_info,
    model_summary,
)

__all__ = [
    "MODELS",
    "ModelSpec",
    "SegmentationNet",
    "build_model",
    "check_input_size",
    "clamp_focal_weights_",
    "count_gflops",
    "count_parameters",
    "focal_weights",
    "list_models",
    "model_info",
    "model_summary",
]
