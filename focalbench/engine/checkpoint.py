"""Complete checkpoints: everything a resumed run needs to continue bit-for-bit.

A checkpoint holds the model, optimiser, LR scheduler, gradient scaler, the early-stopping
book-keeping, the history so far and every random state (Python, NumPy, torch CPU, torch CUDA,
and the engine's augmentation generator), plus the epoch it closes. nnU-Net lost runs to resumes
that reset the learning rate (#901); storing all of it together is the cure.

A file is ``torch.save``'s bytes followed by one trailer line ``focalbench-sha256:<hex>\n``, the
SHA-256 of those bytes (``torch.load`` reads the zip archive from its end and skips the trailer,
so the file stays loadable by hand). A truncated file lacks its trailer and a flipped byte
changes the hash: :func:`load` rejects both with one line, where ``torch.load`` would fail deep
in miniz, or load silently wrong weights. Files are written atomically through
:mod:`focalbench.store`, so Ctrl-C or a full disk leaves the previous file.

The last two good ``last.pt`` are kept (:func:`save_last` moves the previous one to
``last.previous.pt`` once the new one is on disk); :func:`load_latest` resumes from the newer good
one and moves a corrupt one aside to ``<name>.corrupt``, so it is never rotated over a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from focalbench.errors import FocalbenchError
from focalbench.store import atomic_write_bytes

TRAILER = b"focalbench-sha256:"
_TRAILER_SIZE = len(TRAILER) + 64 + 1  # + hex digest + newline


class CorruptCheckpoint(FocalbenchError):
    """A checkpoint whose bytes do not match their SHA-256 (truncated, torn or altered)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is corrupt ({reason}); delete it and rerun the same command")
        self.reason = reason


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Snapshot of every random stream a training epoch draws from."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        # only the run's device's stream (dropout draws from it; with --device cuda:1 that is
        # not the current device): a resume may land on a node with other GPUs
        "cuda": torch.cuda.get_rng_state(generator.device)
        if generator.device.type == "cuda"
        else None,
        "generator": generator.get_state(),
    }


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and generator.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], generator.device)
    generator.set_state(state["generator"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save(path: Path, **state: Any) -> None:
    atomic_write_bytes(path, _encode(state))


def save_keeping_previous(path: Path, **state: Any) -> None:
    """Write ``path``, keeping the file it replaces as :func:`previous_of` ``path``."""
    atomic_write_bytes(path, _encode(state), previous=previous_of(path))


def previous_of(path: Path) -> Path:
    """``last.pt`` → ``last.previous.pt``: the second-newest good checkpoint."""
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def restore_best(path: Path, best_epoch: int) -> None:
    """Make ``path`` (``best.pt``) the checkpoint of ``best_epoch`` again, on resume.

    ``best.pt`` is written before ``last.pt``: a crash between the two leaves it holding an
    epoch that the resume abandons and trains again — not bit for bit on CUDA, so the redo may
    not improve, and the abandoned weights would be tested as the run's best. Its previous copy
    is then the best; with none of ``best_epoch`` (0: no best yet) the abandoned one is removed.
    """
    if not path.exists() or _epoch_of(path) == best_epoch:
        return
    previous = previous_of(path)
    if previous.exists() and _epoch_of(previous) == best_epoch:
        previous.replace(path)
    else:
        path.unlink()


def _epoch_of(path: Path) -> int | None:
    try:
        return load(path).get("epoch")
    except CorruptCheckpoint:
        return None


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU (RNG states must stay CPU tensors; ``load_state_dict``
    moves weights and optimiser state to the parameters' device); :class:`CorruptCheckpoint`
    when its checksum does not match. A file without a trailer (written before checksums) is
    read as it is."""
    data = Path(path).read_bytes()
    body, trailer = data[:-_TRAILER_SIZE], data[-_TRAILER_SIZE:]
    if trailer.startswith(TRAILER):
        if hashlib.sha256(body).hexdigest().encode() != trailer[len(TRAILER) : -1]:
            raise CorruptCheckpoint(path, "its SHA-256 does not match: truncated or altered")
    else:
        body = data
    try:
        # weights_only=False: the file is our own and holds NumPy/Python RNG tuples.
        return torch.load(io.BytesIO(body), map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:  # a pre-checksum file cut short
        raise CorruptCheckpoint(
            path,
            f"truncated or torn: no checksum at its end, and torch.load fails with "
            f"{type(exc).__name__}",
        ) from None


def load_latest(path: Path) -> dict[str, Any] | None:
    """The newest good one of ``path`` and its previous copy, or ``None`` (start from epoch 0).

    A corrupt one is moved to ``<name>.corrupt`` and reported in one line on stderr that says
    what happens instead: resume from the previous checkpoint's epoch, or restart.
    """
    corrupt = []
    for candidate in (path, previous_of(path)):
        if not candidate.exists():
            continue
        try:
            state = load(candidate)
        except CorruptCheckpoint as exc:
            aside = candidate.with_name(candidate.name + ".corrupt")
            with contextlib.suppress(
                OSError
            ):  # a read-only folder: the next save fails in one line
                candidate.replace(aside)
            corrupt.append(f"{candidate} is corrupt ({exc.reason}; kept as {aside.name})")
            continue
        if corrupt:
            _note("; ".join(corrupt) + f"; resuming from {candidate.name} (epoch {state['epoch']})")
        return state
    if corrupt:
        _note("; ".join(corrupt) + "; restarting from epoch 0")
    return None


def _encode(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    body = buffer.getvalue()
    return body + TRAILER + hashlib.sha256(body).hexdigest().encode() + b"\n"


def _note(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)
