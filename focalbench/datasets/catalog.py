"""The dataset registry, read from ``datasets.toml`` (one place per dataset fact).

Each entry becomes a :class:`DatasetSpec`; :func:`get_spec` raises a one-line error that lists
every dataset on an unknown name, and :func:`paper_settings` returns a paper's working size,
split rule and (where the paper gives it) Unified Focal γ for one dataset.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from focalbench.errors import FocalbenchError
from focalbench.registry import Registry


class SourceKind(str, Enum):
    """How a source file is obtained: downloaded by ``fetch`` or brought by the user."""

    http = "http"
    manual = "manual"
    kaggle = "kaggle"


class Merge(str, Enum):
    """How several mask files of one image become one mask."""

    single = "single"
    union = "union"


@dataclass(frozen=True)
class Source:
    file: str
    kind: SourceKind
    url: str
    sha256: str
    size: int
    where: str


@dataclass(frozen=True)
class FileLayout:
    """Path templates of the official archive; see the header of ``datasets.toml``."""

    image: str
    mask: str
    fov: str | None = None
    image_exclude: str | None = None
    merge: Merge = Merge.single
    threshold: int = 127


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    citation: str
    license: str
    task: str
    homepage: str
    channels: int
    native_size: tuple[int, int] | None
    images: int
    builtin: bool = False
    layout: FileLayout | None = None
    sources: tuple[Source, ...] = ()
    papers: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str | None = None  # a user dataset's imported folder or CSV (``focalbench import``)

    @property
    def downloadable(self) -> bool:
        return bool(self.sources) and all(s.kind is SourceKind.http for s in self.sources)


def _parse(name: str, raw: dict[str, Any]) -> DatasetSpec:
    native = raw["native_size"]
    layout = raw.get("layout")
    return DatasetSpec(
        name=name,
        title=raw["title"],
        citation=raw["citation"],
        license=raw["license"],
        task=raw["task"],
        homepage=raw["homepage"],
        channels=int(raw["channels"]),
        native_size=None if native == "varies" else (int(native[0]), int(native[1])),
        images=int(raw["images"]),
        builtin=bool(raw.get("builtin", False)),
        layout=None
        if layout is None
        else FileLayout(**{**layout, "merge": Merge(layout.get("merge", "single"))}),
        sources=tuple(
            Source(**{**s, "kind": SourceKind(s["kind"])}) for s in raw.get("sources", [])
        ),
        papers=raw.get("papers", {}),
    )


@functools.lru_cache(maxsize=1)
def registry() -> Registry[DatasetSpec]:
    """All datasets of the packaged ``datasets.toml``, in file order."""
    text = resources.files("focalbench").joinpath("datasets.toml").read_text(encoding="utf-8")
    reg: Registry[DatasetSpec] = Registry("dataset")
    for name, raw in tomllib.loads(text).items():
        reg.add(name, _parse(name, raw))
    return reg


def get_spec(name: str, data_dir: str | os.PathLike | None = None) -> DatasetSpec:
    """A catalogue dataset, else one imported into the data folder (``focalbench import``)."""
    if name in registry():
        return registry().get(name)
    from focalbench.datasets.user import user_datasets, user_spec  # user.py builds on this module

    spec = user_spec(name, data_dir)
    if spec is None:
        imported = ", ".join(user_datasets(data_dir))
        mine = f"; imported: {imported}" if imported else ""
        raise FocalbenchError(
            f"{registry().unknown_message(name)}{mine}; or import your own: focalbench import NAME PATH"
        )
    return spec


def dataset_names() -> list[str]:
    return registry().names()


SMOKE_SIZE = (64, 64)


def paper_settings(
    name: str, protocol: str, data_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """A paper's settings for one dataset: ``size`` (H, W), ``split`` rule, and where the paper
    gives them ``ufl_gamma`` (paper 000 Table 1) and ``channels``.

    ``smoke`` exists for every dataset: 64×64 with the dataset's first listed split rule.
    """
    spec = get_spec(name, data_dir)
    raw = spec.papers.get(protocol)
    if raw is None and protocol == "smoke":
        first = next(iter(spec.papers.values()), {"split": "random-64-16-20"})
        raw = {"size": list(SMOKE_SIZE), "split": first["split"]}
    if raw is None:
        raise FocalbenchError(
            f"dataset {name!r} has no settings for protocol {protocol!r}; "
            f"choose from: {', '.join(sorted({*spec.papers, 'smoke'}))}"
        )
    settings = dict(raw)
    settings["size"] = (int(raw["size"][0]), int(raw["size"][1]))
    settings.setdefault("channels", spec.channels)
    return settings
