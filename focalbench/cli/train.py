"""`focalbench train`."""

from focalbench.cli._common import command, not_built


@command()
def train() -> None:
    """Not built yet."""
    not_built("train")
