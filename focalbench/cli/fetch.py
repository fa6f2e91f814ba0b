"""`focalbench fetch`."""

from focalbench.cli._common import command, not_built


@command()
def fetch() -> None:
    """Not built yet."""
    not_built("fetch")


@command()
def datasets() -> None:
    """Not built yet."""
    not_built("datasets")
