"""Which device a run uses: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` — never a silent fallback."""

from __future__ import annotations

import re

import torch

from focalbench.errors import FocalbenchError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → the current CUDA device when one is visible, else CPU.

    Asking for CUDA where none is visible, or for an index past the last GPU, is a user error:
    a benchmark that quietly ran on the CPU would report a wall time nobody asked for.
    """
    text = (name or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not match:
        raise FocalbenchError(f"unknown device {name!r}; use --device auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise FocalbenchError(
            f"--device {name} asks for CUDA but no CUDA device is visible; use --device cpu or --device auto"
        )
    index = int(match.group(1)) if match.group(1) else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise FocalbenchError(
            f"--device {name}: only {count} CUDA device(s) visible (cuda:0…cuda:{count - 1})"
        )
    return torch.device("cuda", index)


def describe(device: torch.device) -> str:
    """Human-readable device name for metrics.json, e.g. ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return "cpu"
