"""``report --format html``: one self-contained page that opens offline.

Everything is inside the file: the table (bold best, † significant), its caption, the notes with
every paired test, the ours-vs-paper table, each figure as a base64 ``data:`` PNG, and the
configuration of every run (``config.json``: the run's ``RunConfig`` and the resolved protocol).
No script, no external stylesheet, font or image: a browser shows it without a network.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from html import escape
from pathlib import Path

from focalbench.report.formats import DAGGER, Document, Text
from focalbench.report.runs import Entry

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.45em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
p.caption { font-size: 0.9em; color: #444; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; text-align: left; }
thead th { border-top: 2px solid #222; border-bottom: 1px solid #222; }
tbody tr:last-child td { border-bottom: 2px solid #222; }
tr.rule td { border-top: 1px solid #888; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
ul.notes { font-size: 0.85em; color: #333; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; font-family: monospace; }
details { margin: 0.3em 0; } summary { cursor: pointer; font-family: monospace; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
"""


def _cell(text: Text) -> str:
    body = escape(text.text) + (DAGGER if text.marked else "")
    if text.bold:
        body = f"<strong>{body}</strong>"
    return f'<td class="num">{body}</td>' if text.numeric else f"<td>{body}</td>"


def _table(
    header: Sequence[str], rows: Sequence[Sequence[Text]], rules: Sequence[int] = ()
) -> list[str]:
    out = [
        "<table>",
        "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr></thead>",
        "<tbody>",
    ]
    for i, row in enumerate(rows):
        rule = ' class="rule"' if i in rules and i > 0 else ""
        out.append(f"<tr{rule}>" + "".join(_cell(c) for c in row) + "</tr>")
    out += ["</tbody>", "</table>"]
    return out


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{escape(path.stem)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(path.name)}</figcaption></figure>"
    )


def _configs(entries: Sequence[Entry]) -> list[str]:
    out = []
    for entry in entries:
        for run in entry.runs:
            stored = {
                "config": run.config,
                "resolved": run.resolved,
                "version": run.version,
                "state": run.state.value,
            }
            text = json.dumps(stored, indent=2, sort_keys=True, default=str)
            out.append(
                f"<details><summary>{escape(run.key)} ({escape(run.state.value)})</summary>"
                f"<pre>{escape(text)}</pre></details>"
            )
    return out or ["<p>No runs.</p>"]


def html_document(doc: Document, figures: Sequence[Path], entries: Sequence[Entry]) -> str:
    """The page: title, caption, table, notes (the tests), vs-paper table, figures, configs."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{escape(doc.title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(doc.title)}</h1>",
        f'<p class="caption">{escape(doc.caption)}</p>',
    ]
    out += _table(doc.header, doc.rows, doc.rules)
    if doc.notes:
        out += ['<ul class="notes">', *(f"<li>{escape(note)}</li>" for note in doc.notes), "</ul>"]
    for title, header, rows in doc.appendices:
        out.append(f"<h2>{escape(title)}</h2>")
        out += _table(header, [[Text(t) for t in row] for row in rows])
    out.append("<h2>Figures</h2>")
    out += [_figure(p) for p in figures] or [
        "<p>No figure: the runs hold no history or samples.</p>"
    ]
    out.append("<h2>Run configurations</h2>")
    out += _configs(entries)
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
