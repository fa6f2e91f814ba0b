"""Complete checkpoints: everything a resumed run needs to continue bit-for-bit.

A checkpoint holds the model, optimiser, LR scheduler, gradient scaler, the early-stopping
book-keeping, the history so far and every random state (Python, NumPy, torch CPU, torch CUDA,
and the engine's augmentation generator), plus the epoch it closes. nnU-Net lost runs to resumes
that reset the learning rate (#901); storing all of it together is the cure. Files are written
atomically (:func:`focalbench.store.atomic_torch_save`), so Ctrl-C leaves the previous one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from focalbench.store import atomic_torch_save


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Snapshot of every random stream a training epoch draws from."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        # only the current device's stream: a resume may land on a node with other GPUs
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "generator": generator.get_state(),
    }


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    generator.set_state(state["generator"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save(path: Path, **state: Any) -> None:
    atomic_torch_save(state, path)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU (RNG states must stay CPU tensors; ``load_state_dict``
    moves weights and optimiser state to the parameters' device)."""
    # weights_only=False: the file is our own and holds NumPy/Python RNG tuples.
    return torch.load(path, map_location="cpu", weights_only=False)
