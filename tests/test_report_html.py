"""`report --format html`: one self-contained page, parsed with the standard library's parser."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

from test_report import _history, _samples, make_run
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.report import build_report

VOID = {"meta", "img", "br", "hr", "link", "input"}


class Page(HTMLParser):
    """Collects what a reader of the page sees: tables' cells, images' sources, links, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in VOID:  # elements without an end tag
            self.open.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][-1].append("")
        elif tag == "img":
            self.images.append(attrs["src"])
        for name in ("href", "src"):
            if name in attrs and not attrs[name].startswith("data:"):
                self.external.append(attrs[name])
        if tag in ("script", "link", "iframe"):
            self.external.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (
            f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        )
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)
        if (
            self.open
            and self.open[-1] in ("td", "th", "strong")
            and self.tables
            and self.tables[-1]
        ):
            self.tables[-1][-1][-1] += data


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def test_html_report_is_one_self_contained_page_with_tables_statistics_figures_and_configs(
    tmp_path,
):
    results = tmp_path / "results"
    ids = [f"i{k}" for k in range(6)]
    make_run(
        results,
        "drive",
        "unet",
        "ufl(gamma=0.1)",
        [0.80, 0.82, 0.81, 0.79, 0.80, 0.83],
        ids=ids,
        history=_history({}),
        samples=_samples(0),
    )
    make_run(
        results,
        "drive",
        "focal-use-net",
        "ufl(gamma=0.1)",
        [0.85, 0.86, 0.84, 0.88, 0.87, 0.86],
        ids=ids,
        model_params={"focal_init": 0.0},
        history=_history({"se1": 0.1, "se2": 0.5}),
        samples=_samples(1),
    )
    built = build_report(results, table="se", fmt="html", baseline="U-Net", vs_paper=True)
    assert built.path.name == "report-se.html" and built.path.read_text() == built.text
    assert built.plots == []  # drawn for the page only, not left in a folder
    page = parse(built.text)
    assert page.external == []  # opens offline: no script, stylesheet, link or remote image
    main, paper = page.tables
    assert main[0][:4] == ["Dataset", "Metric", "U-Net", "USE-Net"]
    dsc = next(r for r in main if r[1] == "DSC")
    # U-Net; Focal USE-Net (w₀ = 0), better on all 6 images: exact two-sided p = 2/2^6 < 0.05 → †
    assert dsc[2] == "0.8083" and dsc[5] == "0.8600†"
    assert "<strong>0.8600†</strong>" in built.text  # best of its row, bold as in the paper
    assert paper[0][-1] == "Δ (ours − paper)" and any(
        r[0] == "000" and r[3] == "U-Net" for r in paper[1:]
    )
    text = "".join(page.text)
    assert "paired Wilcoxon" in text and "p_Holm" in text  # the statistics
    assert len(page.images) >= 4  # summary, focal weights, predictions, curves
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert text.count('"focal_init": 0.0') == 1 and '"resolved"' in text  # every run's config


def test_cli_html_writes_the_page_and_prints_only_where(tmp_path):
    results = tmp_path / "results"
    make_run(results, "sample", "unet", "dice", [0.5, 0.6])
    out = tmp_path / "page.html"
    done = CliRunner().invoke(
        app, ["report", "--results", str(results), "--format", "html", "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    assert "<html" not in done.stdout and f"written: {out}" in done.output
    assert parse(out.read_text()).tables[0][0][0] == "Dataset"
