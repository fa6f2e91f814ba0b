"""Datasets: the registry from ``datasets.toml``, ``fetch`` (download, verify, convert, split),
the prepared-dataset format and :func:`load` / :func:`get_split` / :func:`paper_settings`.

    >>> from focalbench.datasets import load, get_split, paper_settings
    >>> s = paper_settings("dsb2018", "paper000")          # {'size': (256, 256), 'split': 'random-64-16-20', ...}
    >>> data = load("sample")                              # ships inside the package
    >>> idx = get_split(data, "random-64-16-20", seed=0)   # {'train': ..., 'val': ..., 'test': ...}
"""

from focalbench.datasets.catalog import DatasetSpec, dataset_names, get_spec, paper_settings
from focalbench.datasets.fetch import dataset_status, fetch
from focalbench.datasets.prepared import PreparedData, data_root, fingerprint, get_split, load

__all__ = [
    "DatasetSpec",
    "PreparedData",
    "data_root",
    "dataset_names",
    "dataset_status",
    "fetch",
    "fingerprint",
    "get_spec",
    "get_split",
    "load",
    "paper_settings",
]
