"""``report``: a results folder → the papers' tables, statistics, ours-vs-theirs, plots."""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from focalbench.errors import FocalbenchError
from focalbench.grammar import split_names
from focalbench.grid.studies import Study, TableSpec
from focalbench.report import formats, stats
from focalbench.report.claim_report import document, evaluate
from focalbench.report.formats import DAGGER, DASH, Document, Format, Text
from focalbench.report.layouts import (
    DECIMALS,
    LAYOUTS,
    LOWER_IS_BETTER,
    NOT_RANKED,
    Cell,
    Table,
    TableName,
    block_title,
    build_table,
    metrics_problem,
)
from focalbench.report.published import Comparison, compare, footnotes
from focalbench.report.runs import (
    IMAGE_METRICS,
    Entry,
    Skipped,
    Status,
    StoredRun,
    group_entries,
    load_runs,
)
from focalbench.store import atomic_write_text


@dataclass(frozen=True)
class TestResult:
    """One row against the baseline of its block (per-image DSC, paired Wilcoxon, Holm)."""

    block: tuple[str, str]
    entry: Entry
    baseline: Entry
    test: stats.PairedTest
    p_holm: float

    @property
    def significant(self) -> bool:
        return self.p_holm < stats.ALPHA


@dataclass
class Report:
    text: str
    records: list[dict[str, Any]]
    path: Path | None
    plots: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def build_report(
    results: str | os.PathLike | None = None,
    table: TableName | str | None = None,
    dataset: str | None = None,
    fmt: Format | str = "markdown",
    out: str | os.PathLike | None = None,
    plots: str | os.PathLike | None = None,
    vs_paper: bool = False,
    baseline: str | None = None,
    ci: bool = False,
    protocol: str | None = None,
    claims: bool = False,
    metrics: str | Sequence[str] | None = None,
    study_file: str | os.PathLike | None = None,
) -> Report:
    """Build the table; ``protocol`` keeps only the runs trained with that protocol. ``claims``
    builds the verdict table of the papers' claims instead (:mod:`~focalbench.report.claim_report`);
    ``dataset`` then names the dataset whose runs every claim is judged on.

    ``metrics`` (``"dsc,recall"`` or a list) are the metrics shown, in that order, in place of
    the layout's own. ``study_file`` (docs/ablate.md § Study files) keeps only the runs its
    grids planned (``ablate --study-file``) and gives its ``[table]``: the title, and the layout,
    baseline and metrics wherever ``table``, ``baseline`` and ``metrics`` are ``None``; ``table``
    is otherwise ``auto``."""
    study = _study(study_file)
    spec = study.table if study is not None else TableSpec("")
    table_name = _enum(TableName, table if table is not None else spec.layout, "--table")
    baseline = baseline if baseline is not None else spec.baseline
    shown = _metrics(metrics) if metrics is not None else spec.metrics
    fmt = _enum(Format, fmt, "--format")
    if claims:
        given = {
            "--table": table_name is not TableName.auto,
            "--vs-paper": vs_paper,
            "--baseline": baseline,
            "--ci": ci,
            "--plots": plots,
            "--metrics": metrics,
            "--study-file": study_file,
        }
        if extra := [flag for flag, value in given.items() if value]:
            raise FocalbenchError(
                f"--claims builds its own table with intervals and tests; drop {', '.join(extra)}"
            )
    results = Path(
        results if results is not None else os.environ.get("FOCALBENCH_RESULTS", "results")
    )
    if not results.is_dir():
        raise FocalbenchError(
            f"results folder {str(results)!r} not found; pass --results DIR (the folder holding runs/)"
        )
    runs, skipped = load_runs(results)
    if study is not None:
        runs = _of_study(runs, results, study, study_file)
    if not any(r.state is Status.done for r in runs):
        raise FocalbenchError(
            f"nothing to report: no finished run in {results / 'runs'} ({_tally(runs, skipped)}); "
            "finish runs with focalbench train or ablate first, or pass the folder holding "
            "them with --results DIR"
        )
    if protocol is not None:
        found = sorted({str(r.config.get("protocol")) for r in runs})
        runs = [r for r in runs if r.config.get("protocol") == protocol]
        if not runs:
            raise FocalbenchError(
                f"no runs with protocol {protocol!r} in {results}; protocols with runs: "
                f"{', '.join(found) or 'none'}"
            )
    entries = group_entries(runs)
    if claims:
        return _claims_report(results, entries, dataset, fmt, out, skipped)
    layout = LAYOUTS[table_name]
    if shown is not None:
        layout = dataclasses.replace(layout, metrics=shown)
    if dataset is not None and dataset not in {e.dataset for e in entries} | set(layout.datasets):
        known = sorted({e.dataset for e in entries}) or ["none"]
        raise FocalbenchError(
            f"no runs for dataset {dataset!r} in {results}; datasets with runs: {', '.join(known)}"
        )
    tab = build_table(layout, entries, dataset)
    tests = significance(tab, baseline) if baseline else []
    if ci:
        _add_intervals(tab)
    mark_best(tab)
    comparisons = compare(tab.entries) if vs_paper else []
    records = make_records(tab, tests, comparisons, ci)
    doc = Document(
        title=spec.title or layout.title,
        caption=caption(tab),
        header=tab.header,
        rows=[[_text(c) for c in row] for row in tab.rows],
        rules=tab.rules,
        notes=notes(tab, tests, skipped, baseline) + (_own_data_notes(tab) if vs_paper else []),
        appendices=[vs_paper_table(comparisons)] if vs_paper else [],
    )
    made = _plots(tab, Path(plots), tests) if plots is not None else []
    text = _html(doc, tab, tests, made) if fmt is Format.html else _render(fmt, doc, records)
    path = (
        Path(out)
        if out is not None
        else results / "reports" / _default_name(table_name, dataset, fmt)
    )
    atomic_write_text(path, text)
    return Report(text, records, path, made, skipped)


def report(*args: Any, **kwargs: Any) -> str:
    """The table as text (Markdown, CSV or LaTeX): :func:`build_report`'s ``.text``, with its
    parameters; the table is also written to ``out`` or ``results/reports/``. See
    :func:`build_report` for the records (``--json``) and the written paths."""
    return build_report(*args, **kwargs).text


# help(report) and a notebook's completion show build_report's parameters, not *args
report.__signature__ = inspect.signature(build_report).replace(return_annotation=str)


def _claims_report(
    results: Path,
    entries: list[Entry],
    dataset: str | None,
    fmt: Format,
    out: str | os.PathLike | None,
    skipped: list[Skipped],
) -> Report:
    if dataset is not None and dataset not in {e.dataset for e in entries}:
        known = ", ".join(sorted({e.dataset for e in entries})) or "none"
        raise FocalbenchError(
            f"no runs for dataset {dataset!r} in {results}; datasets with runs: {known}"
        )
    evidence, not_run = evaluate(entries, dataset)
    doc, records = document(evidence, not_run)
    doc.notes += [f"skipped corrupt run folder {s.path}: {s.reason}" for s in skipped]
    text = _render(fmt, doc, records, entries)
    name = f"report-claims{'-' + dataset if dataset else ''}.{formats.EXTENSIONS[fmt]}"
    path = Path(out) if out is not None else results / "reports" / name
    atomic_write_text(path, text)
    return Report(text, records, path, [], skipped)


def _render(
    fmt: Format, doc: Document, records: list[dict[str, Any]], entries: Sequence[Entry] = ()
) -> str:
    """Markdown, LaTeX and HTML lay out the document; CSV is the tidy records."""
    if fmt is Format.markdown:
        return formats.markdown(doc)
    if fmt is Format.latex:
        return formats.latex(doc)
    if fmt is Format.html:
        from focalbench.report.html import html_document

        return html_document(doc, [], entries)
    return formats.csv_text(records)


def _own_data_notes(table: Table) -> list[str]:
    """--vs-paper on a dataset imported by the user: no paper published numbers for it."""
    from focalbench.datasets.catalog import dataset_names

    own = sorted({e.dataset for e in table.entries} - set(dataset_names()))
    return [
        f"--vs-paper: {name} is your own dataset (focalbench import); no paper has numbers for it"
        for name in own
    ]


def _plots(table: Table, folder: Path, tests: list[TestResult]) -> list[Path]:
    from focalbench.report.plots import make_plots

    return make_plots(table, folder, tests)


def _html(doc: Document, table: Table, tests: list[TestResult], made: list[Path]) -> str:
    """The page with every figure inlined; without --plots the figures are drawn in a temporary folder."""
    from focalbench.report.html import html_document

    if made:
        return html_document(doc, made, table.entries)
    with tempfile.TemporaryDirectory() as folder:
        return html_document(doc, _plots(table, Path(folder), tests), table.entries)


def _study(study_file: str | os.PathLike | None) -> Study | None:
    if study_file is None:
        return None
    from focalbench.grid.study_file import load_study

    return load_study(study_file)


def _of_study(
    runs: list[StoredRun], results: Path, study: Study, study_file: str | os.PathLike
) -> list[StoredRun]:
    """The runs that the grids of ``study`` planned (``ablate --study-file``) in ``results``."""
    from focalbench.grid.driver import study_run_keys

    keys = study_run_keys(results, study.name)
    if not keys:
        raise FocalbenchError(
            f"no grid of study {study.name!r} in {results / 'grids'}: train it with focalbench"
            f" ablate --study-file {study_file}, or drop --study-file to report every run"
        )
    return [r for r in runs if r.key in keys]


def _metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    names = split_names(metrics)
    if problem := metrics_problem(names):
        raise FocalbenchError(f"--metrics {problem}")
    return tuple(names)


def _tally(runs: list, skipped: list[Skipped]) -> str:
    counts = [
        f"{sum(r.state is s for r in runs)} {s.value}" for s in (Status.running, Status.failed)
    ]
    return ", ".join([*counts, f"{len(skipped)} unreadable"])


def _enum(kind: type, value: Any, flag: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise FocalbenchError(f"{flag} {value!r} is unknown; choose from: {choices}") from None


def _default_name(table: TableName, dataset: str | None, fmt: Format) -> str:
    return f"report-{table.value}{'-' + dataset if dataset else ''}.{formats.EXTENSIONS[fmt]}"


# ----------------------------------------------------------------------------------------------
# cells


def cell_stats(cell: Cell) -> tuple[float, float, int]:
    """(mean, sample std, n) over the finished runs of the cell's entry; n = 0 when none."""
    values = cell.entry.values(cell.metric) if cell.entry is not None else np.array([])
    if values.size == 0:
        return math.nan, math.nan, 0
    return (
        float(values.mean()),
        float(values.std(ddof=1)) if values.size > 1 else math.nan,
        int(values.size),
    )


def format_value(metric: str, value: float, decimals: int = DECIMALS) -> str:
    if metric == "params":
        return f"{value / 1e6:.2f}"
    if metric in {"gflops", "hd95"}:
        return f"{value:.2f}"
    if metric == "modules":
        return f"{value:.0f}"
    return f"{value:.{decimals}f}"


def _value_text(cell: Cell) -> str:
    if cell.metric == "modules" and cell.entry is not None and cell.entry.done:
        counts = sorted({r.modules for r in cell.entry.done})
        return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    mean, std, n = cell_stats(cell)
    if n == 0:
        return DASH
    metric, places = cell.metric, cell.decimals
    text = format_value(metric, mean, places)
    if n > 1:
        text += f" ± {format_value(metric, std, places)}"
    if cell.ci is not None and all(map(math.isfinite, cell.ci)):
        text += f" [{format_value(metric, cell.ci[0], places)}, {format_value(metric, cell.ci[1], places)}]"
    return text


def _text(cell: Cell) -> Text:
    if not cell.is_value:
        return Text(cell.text)
    return Text(_value_text(cell), bold=cell.bold, marked=cell.marked, numeric=True)


def mark_best(table: Table) -> None:
    """Bold the best mean of each metric within its group (block × metric), ties at the printed
    precision included; a group with fewer than two finished cells has nothing to compare."""
    groups: dict[tuple, list[Cell]] = {}
    for row in table.rows:
        for cell in row:
            if cell.is_value and cell.metric not in NOT_RANKED and cell_stats(cell)[2] > 0:
                groups.setdefault(cell.group, []).append(cell)
    for cells in groups.values():
        if len(cells) < 2:
            continue
        shown = [float(format_value(c.metric, cell_stats(c)[0], c.decimals)) for c in cells]
        best = min(shown) if cells[0].metric in LOWER_IS_BETTER else max(shown)
        for cell, value in zip(cells, shown, strict=False):
            cell.bold = value == best


def _add_intervals(table: Table) -> None:
    for row in table.rows:
        for cell in row:
            if cell.is_value and cell.entry is not None and cell.metric in IMAGE_METRICS:
                scores = cell.entry.per_image(cell.metric)
                if len(scores):
                    cell.ci = stats.bootstrap_ci(scores.to_numpy())


# ----------------------------------------------------------------------------------------------
# statistics against a baseline


def _names(table: Table, entry: Entry) -> set[str]:
    labels = {" ".join(p.labels) for p in table.placements if p.entry is entry}
    labels |= {p.labels[0] for p in table.placements if p.entry is entry}
    names = {
        entry.model,
        entry.name,
        entry.loss,
        entry.family,
        f"{entry.model}:{entry.family}",
        *labels,
    }
    return {n.lower() for n in names}


def significance(table: Table, baseline: str) -> list[TestResult]:
    """Per block, every other entry of the baseline entry's protocol against it: paired Wilcoxon on
    per-image DSC, then Holm across every test of the table. Marks the DSC cell of significant
    rows (†)."""
    wanted = baseline.lower()
    by_block: dict[tuple[str, str], list[Entry]] = {}
    for p in table.placements:
        if p.entry is not None:
            by_block.setdefault(p.block, []).append(p.entry)
    pairs: list[tuple[tuple[str, str], Entry, Entry]] = []
    for block, entries in by_block.items():
        bases = [e for e in entries if wanted in _names(table, e)]
        if len(bases) > 1:
            names = [e.name for e in bases]
            # a pruned network can share MODEL:LOSS with its source's row; its column label cannot
            columns = [
                next(" ".join(p.labels) for p in table.placements if p.entry is e) for e in bases
            ]
            distinct = len({f"{e.model}:{e.family}" for e in bases}) == len(bases)
            hint = (
                "name one as MODEL:LOSS"
                if distinct
                else f"name one by its column: {', '.join(repr(c) for c in columns)}"
            )
            raise FocalbenchError(
                f"--baseline {baseline!r} matches several rows in {block_title(block)}: {', '.join(names)}; {hint}"
            )
        if bases:
            # another protocol trains on another recipe and split: not a paired comparison
            pairs += [
                (block, e, bases[0])
                for e in entries
                if e is not bases[0] and e.protocol == bases[0].protocol
            ]
    if not any(wanted in _names(table, e) for e in table.entries):
        options = sorted({e.name for e in table.entries})
        raise FocalbenchError(
            f"--baseline {baseline!r} names no row of this table; choose a model, a loss or MODEL:LOSS "
            f"from: {', '.join(options) or 'none (no runs)'}"
        )
    raw = [stats.paired_wilcoxon(e.per_image("dsc"), b.per_image("dsc")) for _, e, b in pairs]
    adjusted = stats.holm([t.p for t in raw])
    results = [
        TestResult(block, e, b, t, p)
        for (block, e, b), t, p in zip(pairs, raw, adjusted, strict=False)
    ]
    significant = {id(r.entry) for r in results if r.significant}
    for row in table.rows:
        for cell in row:
            if cell.metric == "dsc" and cell.entry is not None and id(cell.entry) in significant:
                cell.marked = True
    return results


# ----------------------------------------------------------------------------------------------
# caption, notes, records


def _spread(values: list[Any]) -> str:
    distinct = sorted({str(v) for v in values if v is not None})
    return ", ".join(distinct) if distinct else "not recorded"


def caption(table: Table) -> str:
    from focalbench import __version__

    runs = [r for e in table.entries for r in e.done]
    counts = [len(e.done) for e in table.entries if e.done]
    per_cell = (
        (f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}–{max(counts)}")
        if counts
        else "0"
    )
    return (
        f"Scores are means over test images (aggregation per {_spread([r.metrics.get('aggregation', 'image') for r in runs])}) "
        f"of each run, then mean ± sample std (ddof = 1) over runs (seeds/folds) when a cell has more than one; "
        f"empty-mask policy: {_spread([r.metrics.get('empty_policy') for r in runs])}; "
        f"split: {_spread([r.resolved.get('split') for r in runs])}; runs per cell: {per_cell}; "
        f"protocol: {_spread([r.config.get('protocol') for r in runs])}; "
        f"focalbench {__version__} (runs made with {_spread([r.version for r in runs])}). "
        f"Bold: best per metric; {DASH}: no finished run, or a score its runs did not record."
    )


def _named(entry: Entry) -> str:
    """The entry's name with the configuration that tells two rows of one network apart
    (``focal-use-net:ufl(gamma=0.2) [focal_init=0.0]``)."""
    return f"{entry.name} [{entry.params}]" if entry.params else entry.name


def notes(
    table: Table, tests: list[TestResult], skipped: list[Skipped], baseline: str | None
) -> list[str]:
    out: list[str] = []
    if baseline:
        out.append(
            f"{DAGGER} Holm-adjusted p < {stats.ALPHA} in a two-sided paired Wilcoxon signed-rank test of per-image "
            f"DSC against the baseline ({baseline}) of the same block, over the test images both have "
            f"({len(tests)} test{'s' if len(tests) != 1 else ''} corrected together)."
        )
        out += [
            f"{block_title(t.block)}: {_named(t.entry)} vs {_named(t.baseline)}: n = {t.test.n}, W = {t.test.statistic:g}, "
            f"p = {t.test.p:.4g}, p_Holm = {t.p_holm:.4g}{' ' + DAGGER if t.significant else ''}"
            for t in tests
        ]
    for entry in table.entries:
        for run in entry.pending:
            why = f": {run.error}" if run.error else ""
            out.append(
                f"{run.state.value} run not counted in {block_title((entry.dataset, ''))} {entry.name}: {run.key}{why}"
            )
    out += [f"skipped corrupt run folder {s.path}: {s.reason}" for s in skipped]
    if table.layout.paper is not None:
        out += footnotes(table.layout.paper)
    return out


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def make_records(
    table: Table, tests: list[TestResult], comparisons: list[Comparison], ci: bool
) -> list[dict]:
    """One tidy record per (dataset, model, loss, variant, metric): mean, std, n (+ CI, test, paper)."""
    tested = {id(t.entry): t for t in tests}
    records = []
    for p in table.placements:
        entry = p.entry
        if entry is None:
            continue
        for metric in dict.fromkeys(c.metric for row in table.rows for c in row if c.is_value):
            cell = next(
                c for row in table.rows for c in row if c.entry is entry and c.metric == metric
            )
            mean, std, n = cell_stats(cell)
            record = {
                "dataset": entry.dataset,
                "model": entry.model,
                "loss": entry.loss,
                "pruned": entry.pruned,
                "setting": entry.params,
                "protocol": entry.protocol,
                "label": " ".join(t for t in p.labels if t),
                "metric": metric,
                "mean": _clean(mean),
                "std": _clean(std),
                "n": n,
            }
            if ci:
                low, high = cell.ci or (math.nan, math.nan)
                record |= {"ci_low": _clean(low), "ci_high": _clean(high)}
            if metric == "dsc" and id(entry) in tested:
                t = tested[id(entry)]
                record |= {
                    "baseline": t.baseline.name,
                    "p": _clean(t.test.p),
                    "p_holm": _clean(t.p_holm),
                }
            records.append(record)
    for c in comparisons:
        records.append(
            {
                "dataset": c.entry.dataset,
                "model": c.entry.model,
                "loss": c.entry.loss,
                "pruned": c.entry.pruned,
                "setting": c.entry.params,
                "protocol": c.entry.protocol,
                "label": c.label,
                "metric": c.metric,
                "mean": c.ours,
                "std": _clean(c.ours_std),
                "n": c.n,
                "paper": c.paper,
                "paper_table": c.table,
                "paper_value": c.theirs,
                "paper_std": c.theirs_std,
                "difference": c.difference,
            }
        )
    return records


def vs_paper_table(comparisons: list[Comparison]) -> tuple[str, list[str], list[list[str]]]:
    header = [
        "Paper",
        "Table",
        "Dataset",
        "Paper row",
        "Ours",
        "Metric",
        "Ours (mean)",
        "Paper",
        "Δ (ours − paper)",
    ]
    rows = [
        [
            c.paper,
            c.table,
            block_title((c.entry.dataset, "")),
            c.label,
            c.entry.name,
            c.metric,
            format_value(c.metric, c.ours),
            format_value(c.metric, c.theirs),
            ("+" if c.difference >= 0 else "") + format_value(c.metric, c.difference),
        ]
        for c in comparisons
    ]
    if not rows:
        rows = [[DASH] * len(header)]
    return "Ours vs the papers (every cell both have)", header, rows
