"""focalbench: which loss, which attention module, and where in the network?

The Python API mirrors the CLI; each call is importable without the others' heavy dependencies::

    import focalbench
    focalbench.fetch(["drive"], from_path="DRIVE/")
    focalbench.import_dataset("my-us", "~/data/ultrasound")       # your own images and masks
    result = focalbench.train(focalbench.RunConfig(dataset="sample", model="unet", loss="dice",
                                                   protocol="smoke"))
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError

__version__ = "0.1.0"

# name -> module that defines it; imported on first use so `import focalbench` stays light.
_API = {
    "fetch": "focalbench.datasets",
    "import_dataset": "focalbench.datasets.user",
    "predict": "focalbench.prediction",
    "export": "focalbench.exporter",
    "train": "focalbench.engine",
    "ablate": "focalbench.grid",
    "prune": "focalbench.prune",
    "report": "focalbench.report",
    "build_model": "focalbench.models",
    "build_loss": "focalbench.losses",
}

__all__ = ["RunConfig", "FocalbenchError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'focalbench' has no attribute {name!r}")
