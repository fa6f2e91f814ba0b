"""Markdown, LaTeX (booktabs) and CSV text of a finished table (HTML: ``report/html.py``).

The formatters only lay out text: every number is already a string and every cell already knows
whether it is bold (best of its metric) or marked † (significant against the baseline).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

DASH = "—"
DAGGER = "†"


class Format(str, Enum):
    markdown = "markdown"
    csv = "csv"
    latex = "latex"
    html = "html"  # a self-contained page with the figures: focalbench.report.html


EXTENSIONS = {Format.markdown: "md", Format.csv: "csv", Format.latex: "tex", Format.html: "html"}


@dataclass
class Text:
    """A cell ready to print."""

    text: str
    bold: bool = False
    marked: bool = False
    numeric: bool = False


@dataclass
class Document:
    title: str
    caption: str
    header: list[str]
    rows: list[list[Text]]
    rules: list[int]
    notes: list[str] = field(default_factory=list)
    # extra tables (ours vs the paper): (title, header, rows of plain strings)
    appendices: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)


def markdown(doc: Document) -> str:
    def cell(c: Text) -> str:
        text = c.text.replace("|", "\\|") + (DAGGER if c.marked else "")
        return f"**{text}**" if c.bold else text

    lines = [f"### {doc.title}", "", doc.caption, ""]
    lines += _md_table(
        doc.header,
        [[cell(c) for c in row] for row in doc.rows],
        [c.numeric for c in doc.rows[0]] if doc.rows else None,
    )
    if doc.notes:
        lines += [""] + [f"- {note}" for note in doc.notes]
    for title, header, rows in doc.appendices:
        lines += ["", f"### {title}", ""] + _md_table(header, rows, None)
    return "\n".join(lines) + "\n"


def _md_table(header: list[str], rows: list[list[str]], numeric: list[bool] | None) -> list[str]:
    align = ["---:" if numeric and numeric[i] else "---" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


_LATEX_SPECIAL = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}
_LATEX_TEXT = {
    DASH: "---",
    "–": "--",
    "±": r"$\pm$",
    "·": r"$\cdot$",
    "×": r"$\times$",
    "−": "$-$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "→": r"$\to$",
    "…": r"\ldots{}",
    "§": r"\S{}",
    "†": r"$^\dagger$",
    "ε": r"$\varepsilon$",
}
# Greek capitals that differ from Latin letters have LaTeX commands; \Alpha and the like do not exist.
_GREEK_CAPITALS = {
    "GAMMA",
    "DELTA",
    "THETA",
    "LAMDA",
    "XI",
    "PI",
    "SIGMA",
    "UPSILON",
    "PHI",
    "PSI",
    "OMEGA",
}


def _latex_char(char: str) -> str:
    """One non-ASCII character as ASCII LaTeX that pdflatex sets without extra packages:
    Greek letters as math symbols, sub/superscript digits as math scripts (w₀ → w$_{0}$)."""
    if char in _LATEX_TEXT:
        return _LATEX_TEXT[char]
    name = unicodedata.name(char, "")
    letter = name.rsplit(" ", 1)[-1].replace("LAMDA", "LAMBDA")
    if name.startswith("GREEK SMALL LETTER ") and " " not in name[19:] and letter != "OMICRON":
        return rf"$\{letter.lower()}$"
    if name.startswith("GREEK CAPITAL LETTER ") and name[21:] in _GREEK_CAPITALS:
        return rf"$\{letter.capitalize()}$"
    if (
        name.startswith(("SUBSCRIPT ", "SUPERSCRIPT "))
        and unicodedata.digit(char, None) is not None
    ):
        return f"${'_' if name.startswith('SUB') else '^'}{{{unicodedata.digit(char)}}}$"
    plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()  # é → e
    return latex_escape(plain) if plain else "?"


def latex_escape(text: str) -> str:
    """``text`` as LaTeX: special characters escaped, every non-ASCII character spelled in ASCII."""
    specials = "|".join(re.escape(k) for k in _LATEX_SPECIAL)
    return re.sub(
        f"{specials}|[^\x00-\x7f]",
        lambda m: _LATEX_SPECIAL.get(m.group(0)) or _latex_char(m.group(0)),
        text,
    )


def latex(doc: Document) -> str:
    def cell(c: Text) -> str:
        text = latex_escape(c.text) + (r"$^\dagger$" if c.marked else "")
        return rf"\textbf{{{text}}}" if c.bold else text

    numeric = [c.numeric for c in doc.rows[0]] if doc.rows else [False] * len(doc.header)
    out = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(doc.title + '. ' + doc.caption)}}}",
    ]
    out += _latex_tabular(
        doc.header, [[cell(c) for c in row] for row in doc.rows], numeric, doc.rules
    )
    if doc.notes:
        out.append(r"\par\footnotesize")
        out += [latex_escape(note) + r"\\" for note in doc.notes]
    out.append(r"\end{table}")
    for title, header, rows in doc.appendices:
        out += ["", r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(title)}}}"]
        out += _latex_tabular(
            header, [[latex_escape(t) for t in r] for r in rows], [False] * len(header), []
        )
        out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def _latex_tabular(
    header: list[str], rows: list[list[str]], numeric: list[bool], rules: list[int]
) -> list[str]:
    spec = "".join("r" if n else "l" for n in numeric)
    out = [
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
    ]
    for i, row in enumerate(rows):
        if i in rules or i == 0:
            out.append(r"\midrule")
        out.append(" & ".join(row) + r" \\")
    if not rows:
        out.append(r"\midrule")
    out += [r"\bottomrule", r"\end{tabular}"]
    return out


def csv_text(records: list[dict[str, Any]]) -> str:
    """One tidy row per record; columns in first-seen order over all records."""
    columns: list[str] = []
    for record in records:
        columns += [k for k in record if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if record.get(k) is None else record.get(k) for k in columns})
    return buffer.getvalue()
