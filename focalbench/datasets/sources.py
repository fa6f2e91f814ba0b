"""A read-only view of the files of a dataset source: a folder, zip, tar or RAR archive, or a
folder holding such archives (DRIVE's ``training.zip`` + ``test.zip``).

Members are read straight from the archives, never extracted: ISIC 2018's 11 GB need no second
copy on disk, and an interrupted ``fetch`` leaves nothing extracted behind. Every read error of
an archive (bad header, CRC mismatch, truncation) becomes one :class:`FocalbenchError` line.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import rarfile

from focalbench.errors import FocalbenchError

ARCHIVE_SUFFIXES = (".zip", ".rar", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
RAR_TOOL_HINT = "install a RAR backend: sudo apt-get install unar (or unrar, or libarchive-tools for bsdtar), then rerun"


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _extracted_beside(path: Path) -> bool:
    """True when ``x.zip`` sits next to a folder ``x/`` (its extracted copy)."""
    name = path.name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)]).is_dir()
    return False


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _corrupt(path: Path, exc: BaseException) -> FocalbenchError:
    reason = str(exc) or type(exc).__name__
    return FocalbenchError(
        f"archive {str(path)!r} is corrupt or truncated ({reason}); delete it and download it again"
    )


# Errors that mean "this archive is damaged" for each reader.
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    tarfile.TarError,
    rarfile.BadRarFile,
    rarfile.NotRarFile,
    rarfile.Error,
)


class SourceTree(contextlib.AbstractContextManager):
    """Relative POSIX path → reader, over every file in ``root`` (and inside its archives).

    An archive's members appear under the archive's own relative path, e.g.
    ``training.zip/training/images/21_training.tif``; templates match path endings, so the
    prefix does not matter.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._readers: dict[str, Callable[[], bytes]] = {}
        self._handles: list = []
        if not self.root.exists():
            raise FocalbenchError(
                f"--from {str(self.root)!r} does not exist; pass the downloaded archive or folder"
            )
        if self.root.is_dir():
            for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
                rel = path.relative_to(self.root).as_posix()
                if is_archive(path) and _extracted_beside(path):
                    continue  # e.g. Kaggle's 2d_images.zip next to 2d_images/: read the folder once
                if is_archive(path):
                    self._add_archive(path, rel)
                else:
                    self._readers[rel] = path.read_bytes
        elif is_archive(self.root):
            self._add_archive(self.root, self.root.name)
        else:
            raise FocalbenchError(
                f"--from {str(self.root)!r} is neither a folder nor an archive ({', '.join(ARCHIVE_SUFFIXES)})"
            )

    def _add_archive(self, path: Path, rel: str) -> None:
        name = path.name.lower()
        try:
            if name.endswith(".zip"):
                self._add_zip(path, rel)
            elif name.endswith(".rar"):
                self._add_rar(path, rel)
            else:
                self._add_tar(path, rel)
        except _ARCHIVE_ERRORS as exc:
            raise _corrupt(path, exc) from None

    def _guard(self, path: Path, read: Callable[[], bytes]) -> Callable[[], bytes]:
        def guarded() -> bytes:
            try:
                return read()
            except rarfile.RarCannotExec:
                raise FocalbenchError(
                    f"{path.name} holds compressed RAR entries and no RAR tool was found; {RAR_TOOL_HINT}"
                ) from None
            except _ARCHIVE_ERRORS as exc:
                raise _corrupt(path, exc) from None

        return guarded

    def _add_zip(self, path: Path, rel: str) -> None:
        archive = zipfile.ZipFile(path)
        self._handles.append(archive)
        for info in archive.infolist():
            if not info.is_dir():
                self._readers[f"{rel}/{info.filename}"] = self._guard(
                    path, lambda n=info.filename: archive.read(n)
                )

    def _add_rar(self, path: Path, rel: str) -> None:
        archive = rarfile.RarFile(path)
        self._handles.append(archive)
        for info in archive.infolist():
            if not info.is_dir():
                self._readers[f"{rel}/{info.filename}"] = self._guard(
                    path, lambda n=info.filename: archive.read(n)
                )

    def _add_tar(self, path: Path, rel: str) -> None:
        archive = tarfile.open(path)
        self._handles.append(archive)
        for info in archive.getmembers():
            if info.isfile():
                self._readers[f"{rel}/{info.name}"] = self._guard(
                    path,
                    lambda m=info: archive.extractfile(m).read(),  # type: ignore[union-attr]
                )

    def paths(self) -> list[str]:
        return list(self._readers)

    def read(self, path: str) -> bytes:
        return self._readers[path]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._readers)

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.close()
