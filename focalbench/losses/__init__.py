"""Segmentation losses exactly as the papers define them (spec ``../shared/spec/losses.md``).

``build_loss("ufl(gamma=0.1)+fdpt(eps=0.1)")`` returns an ``nn.Module`` called as
``loss(logits, target, distance_map=None)``; see ``docs/losses.md`` for every formula, default
and the choices the spec made. The maths lives in :mod:`focalbench.losses.functional`, the
distance maps in :mod:`focalbench.losses.boundary`.
"""

from focalbench.losses import boundary, functional
from focalbench.losses.build import (
    LOSSES,
    PRESETS,
    build_loss,
    list_losses,
    loss_info,
    loss_preset,
    loss_presets,
    parse_loss_spec,
)
from focalbench.losses.functional import ClassAgg, Classes, Reduction
from focalbench.losses.modules import AdaptiveLog, DeepSupervision, FdptMode, LambdaOn, Loss

__all__ = [
    "LOSSES",
    "PRESETS",
    "AdaptiveLog",
    "ClassAgg",
    "Classes",
    "DeepSupervision",
    "FdptMode",
    "LambdaOn",
    "Loss",
    "Reduction",
    "boundary",
    "build_loss",
    "functional",
    "list_losses",
    "loss_info",
    "loss_preset",
    "loss_presets",
    "parse_loss_spec",
]
