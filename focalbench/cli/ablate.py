"""`focalbench ablate`."""

from focalbench.cli._common import command, not_built


@command()
def ablate() -> None:
    """Not built yet."""
    not_built("ablate")
