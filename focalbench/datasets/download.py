"""Streaming HTTP download that resumes, retries and verifies.

The bytes go to ``<file>.part`` and only a complete file whose sha256 matches (when one is
published) is renamed to its final name, so a final name always means a verified file. A broken
connection keeps the ``.part`` file; the next attempt (or the next ``fetch``) asks the server for
the rest with ``Range: bytes=<have>-`` and appends when the answer is ``206 Partial Content``
(a ``200`` means the server ignores ranges: start again). Transient failures (connection errors,
time-outs, 5xx, a short body) are retried ``RETRIES`` times with exponential back-off
``BACKOFF · 2^k`` seconds; a 4xx answer is final.

A server that cannot be reached at all (no route, no DNS, refused, or no answer to the TCP
handshake within ``CONNECT_TIMEOUT``) is final too: that is a machine without a network, and six
tries with back-off would only delay the one line that names the URL and ``--from``. Once
connected, each read may wait ``TIMEOUT`` (a slow server is not a missing network).
"""

from __future__ import annotations

import errno
import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

import focalbench
from focalbench.datasets.sources import sha256_file
from focalbench.errors import FocalbenchError
from focalbench.store import free_space

RETRIES = 5
BACKOFF = 1.0  # seconds; tests set it to 0
TIMEOUT = 60.0  # seconds a connected socket may wait for the next byte
CONNECT_TIMEOUT = 10.0  # seconds for the TCP (and TLS) handshake
CHUNK = 1 << 20


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


class _Retry(Exception):
    """A transient failure: keep the ``.part`` file and try again."""


class _ConnectFirst:
    """Connect within ``CONNECT_TIMEOUT``, then read with ``TIMEOUT``: one socket timeout for both
    (what ``urlopen(timeout=…)`` offers) would be too long for the one or too short for the other."""

    def connect(self) -> None:
        self.timeout = CONNECT_TIMEOUT
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(TIMEOUT)  # type: ignore[attr-defined]


class _HTTPConnection(_ConnectFirst, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_ConnectFirst, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPSConnection, req)


_OPENER = urllib.request.build_opener(_HTTPHandler, _HTTPSHandler)
# Failures to open a connection at all: no network (or none to that host), never transient.
_UNREACHABLE = (socket.gaierror, TimeoutError, ConnectionRefusedError)
_UNREACHABLE_ERRNO = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL}


def _unreachable(url: str, reason: OSError, part: Path) -> FocalbenchError:
    have = part.stat().st_size if part.exists() else 0
    kept = f"; {have} bytes are kept and a rerun resumes" if have else ""
    what = (
        f"no answer within {CONNECT_TIMEOUT:g} s"
        if isinstance(reason, TimeoutError)
        else reason.strerror or type(reason).__name__
    )
    return FocalbenchError(
        f"cannot reach {url} ({what}){kept}; check the network, or download "
        "the file elsewhere and pass it with --from PATH"
    )


def _local_failure(exc: OSError, part: Path) -> FocalbenchError:
    """A failure to write the ``.part`` file is final: retrying cannot free disk space."""
    have = part.stat().st_size if part.exists() else 0
    if exc.errno == errno.ENOSPC:
        return FocalbenchError(
            f"disk full while downloading to {part.parent}; free space or pass --data-dir DIR "
            f"({free_space(part)} free there), then rerun the same command to resume from byte {have}"
        )
    return FocalbenchError(
        f"cannot write {part} ({exc.strerror or type(exc).__name__}; {free_space(part)} free "
        "there); pass a writable --data-dir DIR"
    )


def _attempt(url: str, part: Path, progress: Progress | None, task: int | None) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"focalbench/{focalbench.__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = _OPENER.open(urllib.request.Request(url, headers=headers))
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part is already whole
            return
        if exc.code >= 500 or exc.code == 429:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise FocalbenchError(f"cannot download {url} (HTTP {exc.code} {exc.reason})") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, _UNREACHABLE) or getattr(reason, "errno", None) in _UNREACHABLE_ERRNO:
            raise _unreachable(url, reason, part) from None
        raise _Retry(str(reason)) from None
    except OSError as exc:  # connected, but the answer broke or stalled
        raise _Retry(str(exc)) from None
    with response:
        resumed = response.status == 206
        mode = "ab" if resumed else "wb"
        start = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        if progress is not None and task is not None:
            progress.update(task, total=total, completed=start)
        received = start
        try:
            with open(part, mode) as handle:
                while True:
                    try:  # only the network side is transient
                        block = response.read(CHUNK)
                    except (
                        TimeoutError,
                        http.client.IncompleteRead,
                        ConnectionError,
                        OSError,
                    ) as exc:
                        raise _Retry(
                            f"connection broke after {received} bytes ({type(exc).__name__})"
                        ) from None
                    if not block:
                        break
                    handle.write(block)
                    received += len(block)
                    if progress is not None and task is not None:
                        progress.update(task, completed=received)
        except OSError as exc:  # opening, writing or flushing the part file
            raise _local_failure(exc, part) from None
        if total is not None and received < total:
            raise _Retry(f"connection closed after {received} of {total} bytes")


def download(url: str, dest: Path, sha256: str = "", progress: Progress | None = None) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify ``sha256`` when given, and
    return the sha256 seen. A mismatch moves the file aside to ``<dest>.sha256-mismatch``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    task = progress.add_task(dest.name, total=None) if progress is not None else None
    reason = ""
    for attempt in range(RETRIES + 1):
        try:
            _attempt(url, part, progress, task)
            break
        except _Retry as exc:
            reason = str(exc)
            if attempt < RETRIES:
                time.sleep(BACKOFF * 2**attempt)
    else:
        have = part.stat().st_size if part.exists() else 0
        raise FocalbenchError(
            f"download of {url} failed after {RETRIES + 1} tries ({reason}); "
            f"rerun the same command to resume from byte {have}"
        )
    seen = sha256_file(part)
    if sha256 and seen != sha256.lower():
        aside = dest.with_name(dest.name + ".sha256-mismatch")
        os.replace(part, aside)
        raise FocalbenchError(
            f"checksum mismatch for {dest.name}: expected sha256 {sha256}, saw {seen}; "
            f"the file is kept at {aside} and nothing was prepared"
        )
    os.replace(part, dest)
    return seen
