"""The one registry mechanism: a table of names that datasets, backbones, augmentations and export
formats fill beside their code; flags' choices, --help and the unknown-name error all read it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from reid_tf.errors import ReidError

T = TypeVar("T")


class UnknownNameError(ReidError, KeyError):
    """A name that no module registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Mapping, Generic[T]):
    """name -> entry, in registration order; a name registers once. `flag` names the flag that
    selects an entry, for the one-line error of an unknown name."""

    def __init__(self, kind: str, flag: str, error: type[ReidError] = UnknownNameError):
        self.kind, self.flag, self.error = kind, flag, error
        self._entries: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, entry: Any = None, *, help: str = "") -> Any:
        """Adds `entry` under `name`; without an entry, a decorator that adds what it decorates."""
        def add(value: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name], self._help[name] = value, help
            return value
        return add if entry is None else add(entry)

    def lookup(self, name: str) -> T:
        """The entry of `name`, or the one-line error naming the flag and the registered names."""
        if name not in self._entries:
            raise self.error(f"{self.flag}={name}: unknown {self.kind}; one of {', '.join(self._entries)}")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def help(self) -> str:
        """'name: help; ...' for the entries that have a help text, in order."""
        return "; ".join(f"{n}: {h}" for n, h in self._help.items() if h)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def names_of(registry: Callable[[], Registry]) -> Callable[[], tuple[str, ...]]:
    """A settings' `choices` source: the names of the registry `registry()` returns when asked (after
    the modules that fill it are imported), not a copied tuple."""
    return lambda: registry().names()
