"""The papers' claims (``claims.json``) as comparisons of two published rows.

A claim names a paper, a table, a dataset, a metric (a ``published.json`` column), row A, and
row B — one label, several, or ``*`` = every other row of the dataset's block with a number —
the direction of A − B its sentence states. :func:`pairs` expands it into one
:class:`ClaimPair` per B row, with the published difference computed from the published table.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from focalbench.report.published import our_metric, published, published_value


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    table: str
    dataset: str
    metric: str  # a published column
    a: str
    b: tuple[str, ...]  # ("*",) = every other row
    direction: str  # "higher" | "lower": the sentence's A − B
    section: str
    quote: str
    note: str | None = None


@dataclass(frozen=True)
class ClaimPair:
    """One A-vs-B comparison of a claim, with both published rows and values (in our units)."""

    claim: Claim
    a_row: dict[str, Any]
    b_row: dict[str, Any]
    metric: str  # our metric name
    a_value: float
    b_value: float
    a_std: float | None
    b_std: float | None

    @property
    def published_difference(self) -> float:
        return self.a_value - self.b_value


@functools.cache
def _raw() -> dict[str, Any]:
    return json.loads(
        resources.files("focalbench.report").joinpath("claims.json").read_text(encoding="utf-8")
    )


def claims() -> list[Claim]:
    out = []
    for raw in _raw()["claims"]:
        b = raw["b"]
        out.append(
            Claim(
                raw["id"],
                raw["paper"],
                raw["table"],
                raw["dataset"],
                raw["metric"],
                raw["a"],
                tuple(b) if isinstance(b, list) else (b,),
                raw["direction"],
                raw["section"],
                raw["quote"],
                raw.get("note"),
            )
        )
    return out


def unjudged() -> list[dict[str, str]]:
    """Comparative sentences no table row can test, each with the reason."""
    return list(_raw()["unjudged"])


def stated_dataset(name: str) -> dict[str, Any] | None:
    """What a paper states about a dataset (images, size, foreground %, the sentence)."""
    return _raw()["datasets"].get(name)


def table_rows(paper: str, table: str, dataset: str) -> list[dict[str, Any]]:
    """The published rows of one dataset's block of a paper's table."""
    for t in published()["tables"]:
        if t["paper"] == paper and t["table"] == table:
            return [r for r in t["rows"] if r["dataset"] == dataset]
    raise KeyError(f"paper {paper} has no {table} in published.json")


def _column(paper: str, table: str) -> list[str]:
    return next(
        t["columns"] for t in published()["tables"] if t["paper"] == paper and t["table"] == table
    )


def pairs(claim: Claim) -> list[ClaimPair]:
    """The claim's comparisons: A against each B row that prints a number for the metric."""
    rows = table_rows(claim.paper, claim.table, claim.dataset)
    by_label = {r["label"]: r for r in rows}
    column = _column(claim.paper, claim.table).index(claim.metric)
    metric, factor = our_metric(claim.metric)
    a_row = by_label[claim.a]
    a_value, a_std = published_value(a_row["values"][column])
    others = (
        [r for r in rows if r is not a_row]
        if claim.b == ("*",)
        else [by_label[label] for label in claim.b]
    )
    out = []
    for b_row in others:
        b_value, b_std = published_value(b_row["values"][column])
        if a_value is None or b_value is None:
            continue  # a cell the paper does not print (paper 000 Table 4, DRIVE, pruned)
        out.append(
            ClaimPair(
                claim,
                a_row,
                b_row,
                metric,
                a_value * factor,
                b_value * factor,
                None if a_std is None else a_std * factor,
                None if b_std is None else b_std * factor,
            )
        )
    return out
