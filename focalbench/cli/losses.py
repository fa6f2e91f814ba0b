"""`focalbench losses`."""

from focalbench.cli._common import command, not_built


@command()
def losses() -> None:
    """Not built yet."""
    not_built("losses")
