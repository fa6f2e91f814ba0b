"""The training engine: ``train(config)`` runs one grid cell into its run folder.

Modules: ``loop`` (the readable training loop), ``data`` (device-resident splits), ``augment``
(batched device augmentation), ``checkpoint`` (complete, atomic checkpoints and RNG states),
``device`` (device resolution), ``progress`` (display).
"""

from focalbench.engine.loop import train

__all__ = ["train"]
