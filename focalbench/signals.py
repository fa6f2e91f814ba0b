"""Stopping on SIGINT, SIGTERM and SIGHUP: finish the step, keep what is saved, exit 128 + n.

While :func:`stop_on_signals` is active, the first of these signals only records itself; the
work asks :func:`raise_if_stopping` at its safe points (a training step's end, an epoch's end,
the grid driver's poll) and unwinds with :class:`Interrupted`. A second signal while stopping
exits at once with the same code (every file write is atomic, so nothing is left half
written). The previous handlers are restored when the block ends; outside the main thread
(where Python cannot install handlers) the block does nothing. A SIGHUP ignored by ``nohup``
stays ignored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []  # the signal that asked this process to stop, once one has


class Interrupted(KeyboardInterrupt):
    """Work stopped by signal ``signum`` at a safe point; the shell's exit code is 128 + n."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _record(signum: int, frame: FrameType | None) -> None:
    if _received:  # asked twice: stop now
        os._exit(128 + _received[0])
    _received.append(signum)


def ask_to_stop(signum: int) -> None:
    """Ask the work to stop at its next safe point, as a first stop signal does, from a handler
    of another signal (a Slurm job's time-limit USR2). Asked before :func:`stop_on_signals`
    begins, the work stops at its first safe point."""
    if not _received:
        _received.append(signum)


def stopping() -> int | None:
    """The signal that asked this process to stop, or ``None``."""
    return _received[0] if _received else None


def raise_if_stopping() -> None:
    if _received:
        raise Interrupted(_received[0])


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Record SIGINT/SIGTERM/SIGHUP instead of dying for the duration of the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        # nohup's SIGHUP stays ignored; SIGINT is caught even when inherited as ignored (a
        # script's `cmd &` starts it so), since only an explicit kill can send it there
        if not (s == signal.SIGHUP and previous[s] == signal.SIG_IGN):
            signal.signal(s, _record)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _received.clear()
