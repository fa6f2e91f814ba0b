"""`focalbench report`."""

from focalbench.cli._common import command, not_built


@command()
def report() -> None:
    """Not built yet."""
    not_built("report")
