"""Things found by name: the one registry behind ``register_model`` and ``register_strategy``.

As timm's model registry: a decorator adds a factory under a name, ``names()`` lists
them in registration order, and looking up an unknown name is an error that lists
the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from bal.errors import ParameterError

F = TypeVar("F", bound=Callable)

__all__ = ["Registry"]


class Registry(Generic[F]):
    """Factories by name. ``kind`` (e.g. ``"model"``) names the parameter in errors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator adding ``factory`` as ``name``; a name taken twice is a programming error (ValueError)."""

        def decorator(factory: F) -> F:
            if name in self._factories:
                raise ValueError(f"{self.kind} name {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def remove(self, name: str) -> None:
        """Forget ``name`` (a test's or a plugin's clean-up)."""
        self._factories.pop(name, None)

    def names(self) -> list[str]:
        """Every registered name, in registration order."""
        return list(self._factories)

    def get(self, name: str) -> F:
        """The factory of ``name``; an unknown name raises ParameterError listing the known ones."""
        if name not in self._factories:
            raise ParameterError(self.kind, f"unknown {{name}} {name!r}; available: {', '.join(self.names())}")
        return self._factories[name]
