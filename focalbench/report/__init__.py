"""`focalbench report`: the papers' tables from a results folder, with statistics and plots.

    from focalbench.report import report
    print(report("results", table="losses", baseline="dice", ci=True, vs_paper=True))

Layouts (:mod:`~focalbench.report.layouts`), statistics (:mod:`~focalbench.report.stats`),
formatters (:mod:`~focalbench.report.formats`), the papers' numbers
(:mod:`~focalbench.report.published`), their claims (:mod:`~focalbench.report.claims`) judged by
the verdict rule (:mod:`~focalbench.report.verdict`, laid out by
:mod:`~focalbench.report.claim_report`: ``report("results", claims=True)``) and plots
(:mod:`~focalbench.report.plots`).
"""

from importlib import import_module
from typing import Any

# name -> module that defines it; imported on first use so that the CLI, which only needs the
# enums, does not load scipy and pandas at start-up.
_API = {
    "Report": "focalbench.report.build",
    "build_report": "focalbench.report.build",
    "report": "focalbench.report.build",
    "Format": "focalbench.report.formats",
    "TableName": "focalbench.report.layouts",
}

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'focalbench.report' has no attribute {name!r}")
