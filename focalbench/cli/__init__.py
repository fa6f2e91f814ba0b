"""The ``focalbench`` command: a thin Typer layer over the Python API.

Each subcommand lives in its own module and only parses options, calls one API function and
prints its result; the work happens in the library so a notebook can call it the same way.
"""

from focalbench.cli import (  # noqa: F401  (register commands)  # noqa: F401  (register commands)
    ablate,
    export,
    fetch,
    imports,
    losses,
    models,
    predict,
    prune,
    report,
    train,
)
from focalbench.cli._common import app

__all__ = ["app"]
