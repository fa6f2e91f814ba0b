"""`focalbench models`."""

from focalbench.cli._common import command, not_built


@command()
def models() -> None:
    """Not built yet."""
    not_built("models")
