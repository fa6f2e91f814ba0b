"""Studies → grid cells → executors: the papers' grids as one resumable command.

``studies`` (the registry of named studies), ``planner`` (study × options → cells, no I/O),
``driver`` (runs the cells through an executor, records, resumes), ``display`` (progress and
the end summary).
"""

from focalbench.grid.driver import GridResult, ablate, prepare
from focalbench.grid.planner import GridCell, GridPlan, plan
from focalbench.grid.studies import STUDIES, AttentionStudy, Study, StudyName

__all__ = [
    "STUDIES",
    "AttentionStudy",
    "GridCell",
    "GridPlan",
    "GridResult",
    "Study",
    "StudyName",
    "ablate",
    "plan",
    "prepare",
]
