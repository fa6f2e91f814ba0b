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

from focalbench.report.build import Report, build_report, report
from focalbench.report.formats import Format
from focalbench.report.layouts import TableName

__all__ = ["Format", "Report", "TableName", "build_report", "report"]
