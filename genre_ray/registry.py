"""One small registry type for every "name → implementation" table (decoders, models, aggregators, catalogs,
split strategies, CLI commands, synth styles): registration by decorator, no if/elif chains on names."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """A dict of named implementations with a ``register`` decorator and a ``lookup`` that names the choices."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self[name] = obj
            return obj

        return deco

    def lookup(self, name: str) -> T:
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {sorted(self)}")
        return self[name]
