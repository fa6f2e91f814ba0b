"""The ``focalbench`` command: a thin Typer layer over the Python API.

Each subcommand lives in its own module and only parses options, calls one API function and
prints its result; the work happens in the library so a notebook can call it the same way.
"""

from focalbench.cli._common import app
from focalbench.cli import ablate, fetch, losses, models, prune, report, train  # noqa: F401  (register commands)
from focalbench.cli import export, imports, predict  # noqa: F401  (register commands)

__all__ = ["app"]
