"""`focalbench datasets`, `focalbench models`, `focalbench losses`: what the registries hold."""

from focalbench.cli._common import command, not_built


@command()
def datasets() -> None:
    """Not built yet."""
    not_built("datasets")


@command()
def models() -> None:
    """Not built yet."""
    not_built("models")


@command()
def losses() -> None:
    """Not built yet."""
    not_built("losses")
