"""Typed run configuration and the stable key that names its run folder.

A :class:`RunConfig` is everything that determines the *result* of one grid cell. Where a run
executes (device, results folder, number of workers) is not part of it, so the same cell run on
a laptop or on a cluster lands in the same folder and is found again on rerun.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from focalbench.errors import FocalbenchError
from focalbench.grammar import parse_value


@dataclass(frozen=True)
class RunConfig:
    """One network × loss × dataset × protocol × seed (× fold) cell.

    ``loss`` is a loss spec in the grammar of :func:`focalbench.grammar.parse_loss_spec`, e.g.
    ``"ufl(gamma=0.1)+fdpt(eps=0.1)"``. ``model_params`` reach ``build_model``, ``loss_params``
    reach ``build_loss`` (applied to every term that takes them), and ``overrides`` replace
    protocol fields (``batch_size``, ``lr``, ``size``, ...). ``epochs=None`` keeps the protocol's.

    ``pruned_from`` is the key of the zero-initialised Focal run whose weights chose this
    network's attention positions (paper 000 §2.2). It is part of the key on purpose: a pruned
    network that kept no module is a plain U-Net, retrained as the pruned cell of its study, and
    a run folder says by itself which study step produced it.
    """

    dataset: str
    model: str
    loss: str
    protocol: str = "paper000"
    seed: int = 0
    fold: int | None = None
    epochs: int | None = None
    model_params: dict[str, Any] = field(default_factory=dict)
    loss_params: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    pruned_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def canonical_json(self) -> str:
        """Sorted-key JSON of the config: equal configs give byte-equal text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def key(self) -> str:
        """Readable prefix + 10 hex digits of the canonical config's sha256 (the run folder name)."""
        digest = hashlib.sha256(self.canonical_json().encode()).hexdigest()[:10]
        fold = "" if self.fold is None else f"-f{self.fold}"
        label = f"{self.dataset}-{self.model}-{self.loss}-s{self.seed}{fold}"
        return f"{_slug(label)}-{digest}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:80]


def split_params(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Route ``--param`` pairs: ``model.X=V`` → model, ``loss.X=V`` → loss, ``X=V`` → protocol.

    >>> split_params(["model.width=8", "loss.gamma=0.2", "batch_size=4"])
    ({'width': 8}, {'gamma': 0.2}, {'batch_size': 4})
    """
    routed: dict[str, dict[str, Any]] = {"model": {}, "loss": {}, "": {}}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise FocalbenchError(
                f"--param {pair!r} is not KEY=VALUE; write e.g. --param model.width=16 or --param batch_size=4"
            )
        scope, dot, key = name.strip().rpartition(".")
        if scope not in routed:
            raise FocalbenchError(
                f"--param {pair!r}: prefix {scope!r} is unknown; use model.KEY, loss.KEY or a protocol KEY"
            )
        routed[scope][key] = parse_value(value)
    return routed["model"], routed["loss"], routed[""]
