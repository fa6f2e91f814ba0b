"""``report --claims``: each claim whose rows were run → difference, interval, tests, verdict.

For every :class:`~focalbench.report.claims.ClaimPair` the entries that train its rows A and B
(model, loss family, pruned; :func:`~focalbench.report.published.row_matches`) are looked up on
the claim's dataset — or, with ``dataset``, on that dataset, flagged "not the paper's data". Runs
of A and B pair by (seed, fold); their per-image scores pair by ``image_id``. The maths is
:mod:`~focalbench.report.verdict`; this module only gathers the evidence and lays it out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from focalbench.report import stats, verdict
from focalbench.report.claims import ClaimPair, claims, pairs, stated_dataset, unjudged
from focalbench.report.formats import DASH, Document, Text
from focalbench.report.published import row_matches
from focalbench.report.runs import IMAGE_METRICS, Entry, StoredRun

NOT_RUN = "not run"
NOT_PAPER_DATA = "not the paper's data"


@dataclass
class Evidence:
    """One claim pair judged on one (A entry, B entry) of one protocol."""

    pair: ClaimPair
    dataset: str
    a: Entry
    b: Entry
    repetitions: list[tuple[Any, Any]]  # (seed, fold) both rows ran
    differences: list[np.ndarray]  # per repetition: paired a − b over the images both scored
    image_test: stats.PairedTest | None  # None for a run-level metric (params)
    rep_test: verdict.RepetitionTest
    p_holm: float = math.nan

    @property
    def observed(self) -> float:
        return verdict.observed_difference(self.differences)

    @cached_property
    def interval(self) -> tuple[float, float]:
        return verdict.bootstrap_interval(self.differences)

    @property
    def side(self) -> int:
        return verdict.published_side(self.pair.published_difference, self.pair.claim.direction)

    @property
    def direction(self) -> verdict.Direction:
        return verdict.direction(*self.interval, self.side)

    @property
    def size(self) -> verdict.Size:
        return verdict.size(*self.interval, self.pair.published_difference, self.side)

    @property
    def to_decide(self) -> int | None:
        if self.direction is not verdict.Direction.unclear:
            return None
        return verdict.repetitions_to_decide(*self.interval, self.observed, len(self.repetitions))

    @property
    def images(self) -> int:
        return int(sum(len(d) for d in self.differences))

    def distance(self, which: str) -> float:
        """Our mean of row A or B in the paper's standard deviations of that cell."""
        entry, mean, std = (
            (self.a, self.pair.a_value, self.pair.a_std)
            if which == "a"
            else (self.b, self.pair.b_value, self.pair.b_std)
        )
        values = entry.values(self.pair.metric)
        return verdict.paper_distance(float(values.mean()) if values.size else math.nan, mean, std)

    @property
    def runs(self) -> list[StoredRun]:
        keys = set(self.repetitions)
        return [r for e in (self.a, self.b) for r in e.done if _repetition(r) in keys]


@dataclass(frozen=True)
class NotRun:
    pair: ClaimPair
    dataset: str
    # the paper's row labels without a finished run; both rows ran but never in one protocol
    # and (seed, fold) when empty
    missing: tuple[str, ...]

    @property
    def reason(self) -> str:
        if self.missing:
            return "; ".join(self.missing)
        return "both rows ran, but no (protocol, seed, fold) has both"


def _repetition(run: StoredRun) -> tuple[Any, Any]:
    return run.config.get("seed"), run.config.get("fold")


def _differences(a: StoredRun, b: StoredRun, metric: str) -> np.ndarray:
    if metric not in IMAGE_METRICS:
        difference = a.value(metric) - b.value(metric)
        return np.array([difference]) if math.isfinite(difference) else np.array([])
    if (
        a.per_image is None
        or b.per_image is None
        or metric not in a.per_image
        or metric not in b.per_image
    ):
        return np.array([])
    left = a.per_image.set_index(a.per_image["image_id"].astype(str))[metric].astype(float)
    right = b.per_image.set_index(b.per_image["image_id"].astype(str))[metric].astype(float)
    joined = (left - right).dropna()
    return joined.to_numpy(dtype=float)


def _judge(pair: ClaimPair, dataset: str, a: Entry, b: Entry) -> Evidence | None:
    b_runs = {_repetition(r): r for r in b.done}
    repetitions, differences = [], []
    for run in a.done:
        key = _repetition(run)
        if key in b_runs:
            d = _differences(run, b_runs[key], pair.metric)
            if len(d):
                repetitions.append(key)
                differences.append(d)
    if not differences:
        return None
    image_test = (
        stats.paired_wilcoxon(a.per_image(pair.metric), b.per_image(pair.metric))
        if pair.metric in IMAGE_METRICS
        else None
    )
    return Evidence(
        pair,
        dataset,
        a,
        b,
        repetitions,
        differences,
        image_test,
        verdict.repetition_test(differences),
    )


def evaluate(
    entries: list[Entry], dataset: str | None = None
) -> tuple[list[Evidence], list[NotRun]]:
    """Every claim pair judged where both rows ran (on the claim's dataset, or on ``dataset``),
    the p-values of the images' Wilcoxon tests Holm-corrected over the pairs of each paper table."""
    evidence: list[Evidence] = []
    not_run: list[NotRun] = []
    for claim in claims():
        where = dataset or claim.dataset
        here = [e for e in entries if e.dataset == where and e.done]
        for pair in pairs(claim):
            a_entries = [e for e in here if row_matches(pair.a_row, e)]
            b_entries = [e for e in here if row_matches(pair.b_row, e)]
            judged = [
                j
                for a in a_entries
                for b in b_entries
                if a.protocol == b.protocol
                if (j := _judge(pair, where, a, b)) is not None
            ]
            if judged:
                evidence += judged
            else:
                missing = tuple(
                    row["label"]
                    for row, found in ((pair.a_row, a_entries), (pair.b_row, b_entries))
                    if not found
                )
                not_run.append(NotRun(pair, where, missing))
    families: dict[tuple[str, str], list[Evidence]] = {}
    for e in evidence:
        if e.image_test is not None:
            families.setdefault((e.pair.claim.paper, e.pair.claim.table), []).append(e)
    for family in families.values():
        for e, p in zip(family, stats.holm([e.image_test.p for e in family]), strict=False):
            e.p_holm = p
    return evidence, not_run


# ----------------------------------------------------------------------------------------------
# provenance


def _distinct(values: list[Any]) -> str:
    shown = sorted({str(v) for v in values if v is not None})
    return ", ".join(shown) if shown else "not recorded"


def _data_text(data: dict[str, Any] | None) -> str:
    if not data:
        return "fingerprint not recorded (run made before focalbench recorded it)"
    low, high = data.get("native_min"), data.get("native_max")
    native = (
        f"native {low[0]}×{low[1]}–{high[0]}×{high[1]}"
        if low and high
        else "native size not recorded"
    )
    foreground = data.get("foreground_pct")
    fg = (
        f"foreground {foreground:.2f} %"
        if isinstance(foreground, (int, float))
        else "foreground not recorded"
    )
    return f"sha256 {data['sha256'][:16]}…, {data['n_images']} images, {native} (H×W), {fg}"


def _stated_text(name: str) -> str:
    stated = stated_dataset(name)
    if stated is None:
        return "no paper states this dataset"
    size = (
        stated.get("average_size")
        and f"average size {stated['average_size']}"
        or stated.get("size")
    )
    fg = (
        f", foreground {stated['foreground_pct']} %"
        if stated.get("foreground_pct") is not None
        else ""
    )
    return f'paper {stated["paper"]}: {stated["images"]} images, {size}{fg} ("{stated["quote"]}")'


def provenance(e: Evidence) -> dict[str, Any]:
    """Where the verdict's numbers came from: data copy, split, seeds, protocol, version, device."""
    runs = e.runs
    fingerprints = {
        r.resolved.get("data", {}).get("sha256")
        if r.resolved.get("data")
        else None: r.resolved.get("data")
        for r in runs
    }
    return {
        "data": " | ".join(_data_text(d) for d in fingerprints.values()),
        "paper_data": _stated_text(e.pair.claim.dataset),
        "paper_dataset": e.pair.claim.dataset,
        "not_paper_data": e.dataset != e.pair.claim.dataset,
        "split": _distinct(
            [f"{r.resolved.get('split')} (split seed {r.resolved.get('split_seed')})" for r in runs]
        ),
        "repetitions": ", ".join(
            f"seed {s}" + ("" if f is None else f" fold {f}") for s, f in e.repetitions
        ),
        "protocol": _distinct([r.config.get("protocol") for r in runs]),
        "protocol_source": _distinct([r.resolved.get("source") for r in runs]),
        "recipe": _distinct([_recipe(r.resolved) for r in runs]),
        "version": _distinct([r.version for r in runs]),
        "device": _distinct([r.metrics.get("device") for r in runs]),
        "precision": _distinct([r.resolved.get("precision") for r in runs]),
    }


def _recipe(resolved: dict[str, Any]) -> str | None:
    """The protocol fields that most often explain a gap: size, epochs, batch, optimiser, input,
    checkpoint."""
    if not resolved.get("size"):
        return None
    height, width = resolved["size"]
    return (
        f"{height}×{width}, {resolved.get('epochs')} epochs × batch {resolved.get('batch_size')}, "
        f"{resolved.get('optimizer')} lr {resolved.get('lr')}, "
        f"{resolved.get('normalization')} input, "
        f"{resolved.get('test_checkpoint')} checkpoint tested"
    )


def provenance_text(p: dict[str, Any]) -> str:
    flag = f"{NOT_PAPER_DATA} (claim on {p['paper_dataset']}); " if p["not_paper_data"] else ""
    return (
        f"{flag}data {p['data']} — against {p['paper_data']}; split {p['split']}; repetitions "
        f"{p['repetitions']}; protocol {p['protocol']} ({p['protocol_source']}; {p['recipe']}); "
        f"focalbench {p['version']}; "
        f"device {p['device']}; "
        f"precision {p['precision']}"
    )


# ----------------------------------------------------------------------------------------------
# layout


def _signed(value: float, metric: str) -> str:
    if not math.isfinite(value):
        return DASH
    if metric == "params":
        return f"{value / 1e6:+.2f} M"
    return f"{value:+.4f}"


def _p(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else DASH


def _z(value: float) -> str:
    return f"{value:+.1f}" if math.isfinite(value) else DASH


def _claim_label(pair: ClaimPair) -> str:
    c = pair.claim
    return f"{c.id} ({c.paper} {c.table})"


HEADER = [
    "Claim",
    "Data",
    "A",
    "B",
    "Metric",
    "Reps",
    "Images",
    "A − B [95 % CI]",
    "Published A − B",
    "Direction",
    "Size",
    "p images (Holm)",
    "p reps",
    "Reps to decide",
    "z A",
    "z B",
    "Provenance",
]
NOT_RUN_HEADER = ["Claim", "Data", "A", "B", "Metric", "Why not run (rows without a finished run)"]


def document(
    evidence: list[Evidence], not_run: list[NotRun]
) -> tuple[Document, list[dict[str, Any]]]:
    """The verdict table (one row per judged pair), the not-run pairs, and the tidy records."""
    sources: dict[str, str] = {}
    rows: list[list[Text]] = []
    records: list[dict[str, Any]] = []
    for e in evidence:
        prov = provenance(e)
        text = provenance_text(prov)
        ref = sources.setdefault(text, f"P{len(sources) + 1}")
        low, high = e.interval
        m = e.pair.metric
        data = e.dataset + (f" ({NOT_PAPER_DATA})" if prov["not_paper_data"] else "")
        decide = e.to_decide
        rows.append(
            [
                Text(_claim_label(e.pair)),
                Text(data),
                Text(e.pair.a_row["label"]),
                Text(e.pair.b_row["label"]),
                Text(m),
                Text(str(len(e.repetitions)), numeric=True),
                Text(str(e.images), numeric=True),
                Text(
                    f"{_signed(e.observed, m)} [{_signed(low, m)}, {_signed(high, m)}]",
                    numeric=True,
                ),
                Text(_signed(e.pair.published_difference, m), numeric=True),
                Text(e.direction.value, bold=e.direction is verdict.Direction.holds),
                Text(e.size.value),
                Text(_p(e.p_holm) if e.image_test else DASH, numeric=True),
                Text(_p(e.rep_test.p), numeric=True),
                Text(DASH if decide is None else str(decide), numeric=True),
                Text(_z(e.distance("a")), numeric=True),
                Text(_z(e.distance("b")), numeric=True),
                Text(ref),
            ]
        )
        records.append(
            {
                "claim": e.pair.claim.id,
                "paper": e.pair.claim.paper,
                "paper_table": e.pair.claim.table,
                "dataset": e.dataset,
                "a": e.pair.a_row["label"],
                "b": e.pair.b_row["label"],
                "a_entry": e.a.name,
                "b_entry": e.b.name,
                "metric": m,
                "repetitions": len(e.repetitions),
                "images": e.images,
                "difference": _clean(e.observed),
                "ci_low": _clean(low),
                "ci_high": _clean(high),
                "published_difference": e.pair.published_difference,
                "direction": e.direction.value,
                "size": e.size.value,
                "wilcoxon_n": e.image_test.n if e.image_test else None,
                "wilcoxon_w": _clean(e.image_test.statistic) if e.image_test else None,
                "p": _clean(e.image_test.p) if e.image_test else None,
                "p_holm": _clean(e.p_holm),
                "reps_t": _clean(e.rep_test.statistic),
                "reps_p": _clean(e.rep_test.p),
                "repetitions_to_decide": decide,
                "z_a": _clean(e.distance("a")),
                "z_b": _clean(e.distance("b")),
                "quote": e.pair.claim.quote,
                **{f"provenance_{k}": v for k, v in prov.items()},
            }
        )
    by_claim: dict[tuple[str, str], list[NotRun]] = {}
    for n in not_run:
        by_claim.setdefault((n.pair.claim.id, n.dataset), []).append(n)
    missing_rows = [
        [
            _claim_label(group[0].pair),
            group[0].dataset,
            group[0].pair.a_row["label"],
            ", ".join(n.pair.b_row["label"] for n in group),
            group[0].pair.metric,
            "; ".join(dict.fromkeys(x for n in group for x in (n.missing or (n.reason,)))),
        ]
        for group in by_claim.values()
    ]
    records += [
        {
            "claim": n.pair.claim.id,
            "paper": n.pair.claim.paper,
            "paper_table": n.pair.claim.table,
            "dataset": n.dataset,
            "a": n.pair.a_row["label"],
            "b": n.pair.b_row["label"],
            "metric": n.pair.metric,
            "published_difference": n.pair.published_difference,
            "direction": NOT_RUN,
            "size": NOT_RUN,
            "missing": n.reason,
            "quote": n.pair.claim.quote,
        }
        for n in not_run
    ]
    notes = [RULE] + [f"{ref}: {text}" for text, ref in sources.items()]
    skipped = unjudged()
    notes.append(
        f"{len(skipped)} comparative sentences name no table cell a run can fill (claims.json "
        "'unjudged'): "
        + "; ".join(f"paper {u['paper']} §{u['section']}: {u['why']}" for u in skipped)
    )
    doc = Document(
        title="Do the papers' claims reproduce?",
        caption=(
            f"{len(evidence)} comparisons judged, {len(not_run)} not run. One row per claim pair "
            "whose rows A and B both have finished runs; A − B is the mean over repetitions of "
            "the paired per-image difference."
        ),
        header=HEADER,
        rows=rows or [[Text(DASH) for _ in HEADER]],
        rules=[],
        notes=notes,
        appendices=[
            (
                f"Claims not run ({len(by_claim)} claims, {len(not_run)} comparisons)",
                NOT_RUN_HEADER,
                missing_rows or [[DASH] * len(NOT_RUN_HEADER)],
            )
        ],
    )
    return doc, records


RULE = (
    "Verdict (docs/report.md): 95 % interval of A − B by a two-stage bootstrap (repetitions, "
    "then images within each; 2000 resamples, seed 0). Direction: holds = interval wholly on "
    "the published side of 0 (the sign of the published difference; the sentence's side for a "
    "tie), reversed = wholly on the other side, unclear = contains 0. Size: consistent = "
    "interval contains the published difference, smaller / larger = wholly below / above it on "
    "the published side. p images: two-sided paired Wilcoxon over the images (scores averaged "
    "over repetitions per image), Holm over the pairs of one paper table; p reps: one-sample "
    "t-test of the per-repetition differences. Reps to decide: ceil(R·(half-width/|A − B|)²). "
    "z A / z B: (our mean − paper mean) / paper std of the cell, where the paper prints a std."
)


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def grid_verdicts(cells: Sequence[Any], results: str | os.PathLike | None = None) -> str:
    """``ablate --claims``: the verdict table (Markdown) of the claims a finished grid can judge.

    The grid's protocol keeps other runs of the results folder out. A grid on one dataset that no
    claim names (the sample, an imported dataset) is judged as ``report --claims --dataset D``
    judges it, each verdict flagged as not on the paper's data; on the papers' datasets each
    claim is judged on its own dataset.
    """
    from focalbench.report.build import report

    configs = [c.config for c in cells if getattr(c, "config", None) is not None]
    if not configs:
        return "no cell of this grid ran: no claim to judge"
    datasets = {c.dataset for c in configs}
    papers = {claim.dataset for claim in claims()}
    dataset = next(iter(datasets)) if len(datasets) == 1 and not datasets & papers else None
    return report(results, claims=True, protocol=configs[0].protocol, dataset=dataset)
