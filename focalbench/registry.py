"""Named registries (datasets, networks, losses, protocols) with errors that list the options."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from focalbench.errors import FocalbenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from name to object, filled by the ``register`` decorator.

    ``get`` on an unknown name raises a :class:`FocalbenchError` that suggests the closest name
    and lists every valid one, e.g. ``unknown model 'unte' (did you mean 'unet'?); choose from: ...``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorate

    def add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise FocalbenchError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = did_you_mean(name, self._entries)
        hint = f" (did you mean {close!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; choose from: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def did_you_mean(name: str, options: Iterable[str]) -> str | None:
    """The option closest to a misspelt ``name`` (``batch_sise`` → ``batch_size``), or ``None``."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return close[0] if close else None
