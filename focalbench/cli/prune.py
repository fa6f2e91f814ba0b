"""`focalbench prune`."""

from focalbench.cli._common import command, not_built


@command()
def prune() -> None:
    """Not built yet."""
    not_built("prune")
