"""`focalbench report`: the papers' tables from a results folder."""

from __future__ import annotations

from pathlib import Path

import typer

from focalbench.cli._common import JsonOption, ResultsOption, command, print_json
from focalbench.report.formats import Format
from focalbench.report.layouts import METRIC_NAMES, TableName
from focalbench.store import results_root


@command()
def report(
    results: Path | None = ResultsOption,
    table: TableName | None = typer.Option(
        None,
        "--table",
        help="Layout: losses (paper 000 Table 2), se / ag (000 Tables 3-4), focal-tversky (003 Tables 1-2), "
        "focusnet (002 Tables 1-3), auto (every configuration found). Default: the --study-file's "
        "layout, else auto.",
        show_default=False,
    ),
    study_file: Path | None = typer.Option(
        None,
        "--study-file",
        help="Lay out the table this study file describes: its table section's title, layout, "
        "baseline and metrics; --table, --baseline and --metrics given here win.",
        show_default=False,
    ),
    metrics: str | None = typer.Option(
        None,
        "--metrics",
        help="Show these metrics, in this order, instead of the layout's, e.g. --metrics dsc,recall "
        f"(any of {', '.join(METRIC_NAMES)}).",
        show_default=False,
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Only this dataset, e.g. drive.", show_default=False
    ),
    protocol: str | None = typer.Option(
        None,
        "--protocol",
        help="Only runs trained with this protocol, e.g. paper003.",
        show_default=False,
    ),
    fmt: Format = typer.Option(
        Format.markdown,
        "--format",
        help="markdown, csv, latex, or html (one self-contained page: tables, statistics, figures, configs).",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Write the table here (default: RESULTS/reports/report-<table>[-<dataset>].<ext>).",
        show_default=False,
    ),
    plots: Path | None = typer.Option(
        None, "--plots", help="Write PNG figures into this folder.", show_default=False
    ),
    vs_paper: bool = typer.Option(
        False, "--vs-paper", help="Add ours, the paper's number and the difference per cell."
    ),
    baseline: str | None = typer.Option(
        None,
        "--baseline",
        help="Test each row against this one (paired Wilcoxon on per-image DSC, Holm-corrected): a model, "
        "a loss or MODEL:LOSS. Example: --baseline dice",
        show_default=False,
    ),
    ci: bool = typer.Option(
        False, "--ci", help="Add bootstrap 95% intervals (2000 resamples, seed 0) over test images."
    ),
    claims: bool = typer.Option(
        False,
        "--claims",
        help="Judge every claim of the papers whose rows were run: A - B with a 95% interval, "
        "paired tests, verdict (holds/reversed/unclear; consistent/smaller/larger) and "
        "provenance. With --dataset D, the claims are judged on D's runs (flagged when D is "
        "not the paper's dataset).",
    ),
    json_out: bool = JsonOption,
) -> None:
    """Tables laid out like the papers', with mean ± std, bold best, statistics and plots.

    Example: focalbench report --table losses --baseline dice --vs-paper --plots results/plots;
    focalbench report --study-file gamma.toml; focalbench report --claims --dataset sample
    """
    from focalbench.report import build_report

    built = build_report(
        results_root(results),
        table,
        dataset,
        fmt,
        out,
        plots,
        vs_paper,
        baseline,
        ci,
        protocol,
        claims,
        metrics,
        study_file,
    )
    if json_out:
        print_json(built.records)
        return
    if fmt is not Format.html:  # a page of inlined figures is for a browser, not a terminal
        typer.echo(built.text, nl=not built.text.endswith("\n"))
    typer.echo(f"written: {built.path}" + "".join(f"\nplot: {p}" for p in built.plots), err=True)
