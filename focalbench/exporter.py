"""``export``: a trained network as one TorchScript or ONNX file that runs without focalbench.

The exported graph is the run's input normalisation, the network and a sigmoid: it takes
``image`` float32 ``(N, C, H, W)`` of raw pixel values 0..255 (RGB order, or one grey channel)
at the run's working size and returns ``probability`` float32 ``(N, 1, H, W)``; foreground is
probability > ``threshold``. The batch size is free. Beside ``FILE`` goes ``FILE``'s ``.json``
sidecar: input size, channels, normalisation (already inside the graph), threshold, the run key
and the largest difference measured against the torch network.

Each export is checked before it is put in place: the file is reloaded (``torch.jit.load``, or an
``onnxruntime`` session for ONNX) and run on a seeded random batch of two images; the largest
absolute difference from the torch network must be ≤ 1e-4. ONNX needs the ``onnx`` extra
(``pip install 'focalbench[onnx]'``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn

import focalbench
from focalbench.engine.augment import normalize
from focalbench.errors import FocalbenchError
from focalbench.protocols import Checkpoint, Normalization
from focalbench.store import atomic_write_json
from focalbench.trained import TrainedNetwork, load_trained

TOLERANCE = 1e-4
ONNX_OPSET = 17


class ExportFormat(str, Enum):
    torchscript = "torchscript"
    onnx = "onnx"


class Exported(nn.Module):
    """Normalisation → network → sigmoid of the full-resolution output, as one module."""

    def __init__(self, net: TrainedNetwork) -> None:
        super().__init__()
        self.net = net.model
        self.mode = net.normalization
        mean, std = (
            net.input_stats if net.input_stats is not None else (torch.zeros(1), torch.ones(1))
        )
        self.register_buffer("mean", mean.detach().clone().cpu())
        self.register_buffer("std", std.detach().clone().cpu())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        stats = (self.mean, self.std) if self.mode is Normalization.zscore_dataset else None
        out = self.net(normalize(image, self.mode, stats))
        logits = out[-1] if isinstance(out, (list, tuple)) else out
        return torch.sigmoid(logits)


def sample_input(net: TrainedNetwork, batch: int = 2) -> torch.Tensor:
    """A seeded batch of random pixel values 0..255 at the working size (float32)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, net.channels, *net.size), generator=generator).float()


def _torchscript(module: Exported, x: torch.Tensor, path: Path) -> float:
    with warnings.catch_warnings():
        # the networks' input-size checks (TracerWarning) and torch.jit's deprecation notices:
        # TorchScript is asked for by name, and torch.jit.load still reads it
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(module, x[:1], check_trace=False)
        traced.save(str(path))
        reloaded = torch.jit.load(str(path))
    with torch.no_grad():
        return float((reloaded(x) - module(x)).abs().max())


def _onnx(module: Exported, x: torch.Tensor, path: Path) -> float:
    try:
        import onnxruntime
    except ModuleNotFoundError:
        raise FocalbenchError(
            "ONNX export needs onnx and onnxruntime: pip install 'focalbench[onnx]'"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x[:1],),
            str(path),
            input_names=["image"],
            output_names=["probability"],
            dynamic_axes={"image": {0: "batch"}, "probability": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(["probability"], {"image": x.numpy()})
    with torch.no_grad():
        return float((torch.from_numpy(theirs) - module(x)).abs().max())


def export(
    run_dir: str | os.PathLike,
    format: ExportFormat | str = ExportFormat.torchscript,
    out: str | os.PathLike | None = None,
    checkpoint: Checkpoint | str = Checkpoint.best,
) -> dict[str, Any]:
    """Export the network of ``run_dir`` to ``out`` (default: ``<run_dir>/model.pt`` or
    ``model.onnx``) with its JSON sidecar; returns the sidecar's content plus ``path`` and
    ``sidecar``."""
    try:
        kind = ExportFormat(format)
    except ValueError:
        raise FocalbenchError(f"--format {format!r}: choose torchscript or onnx") from None
    net = load_trained(run_dir, checkpoint, "cpu")
    target = (
        Path(out)
        if out is not None
        else net.run_dir / ("model.pt" if kind is ExportFormat.torchscript else "model.onnx")
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    module = Exported(net).eval()
    x = sample_input(net)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        diff = (_torchscript if kind is ExportFormat.torchscript else _onnx)(module, x, tmp)
        if not diff <= TOLERANCE:
            raise FocalbenchError(
                f"the exported {kind.value} network differs from torch by {diff:.3g} "
                f"(> {TOLERANCE:g}) on a sample batch; nothing was written"
            )
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    sidecar = {
        **net.describe(),
        "format": kind.value,
        "file": target.name,
        "input": {
            "name": "image",
            "dtype": "float32",
            "shape": ["N", net.channels, *net.size],
            "values": "raw pixel values 0..255 (RGB order, or one grey channel), "
            "resized to input_size "
            "(area when shrinking, bilinear when enlarging)",
        },
        "output": {
            "name": "probability",
            "dtype": "float32",
            "shape": ["N", 1, *net.size],
            "foreground": "probability > threshold",
        },
        "normalization_inside": True,
        "max_abs_diff": diff,
        "focalbench_version": focalbench.__version__,
    }
    sidecar_path = target.with_suffix(".json")
    atomic_write_json(sidecar_path, sidecar)
    return {**sidecar, "path": str(target), "sidecar": str(sidecar_path)}
