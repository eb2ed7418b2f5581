"""Named plugin registries resolved from configuration.

Readers, writers, forecasters and compressors register under a name. A
configuration entry is either ``"name"`` or ``{name: {kwargs}}``. Entries may
be given lazily as ``"module:attr"`` so that heavy optional dependencies are
imported only when that plugin is used, with an install hint if missing.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Mapping, TypeVar

from fuxiops.errors import FuxiopsError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping of names to factories (callables or lazy ``module:attr`` strings)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T] | str] = {}
        self._hints: dict[str, str] = {}

    def register(self, name: str, target: Callable[..., T] | str | None = None, *,
                 install_hint: str = "") -> Any:
        """Register ``target`` under ``name``; usable as a decorator when target is None."""
        if target is None:
            def deco(obj: Callable[..., T]) -> Callable[..., T]:
                self._entries[name] = obj
                if install_hint:
                    self._hints[name] = install_hint
                return obj
            return deco
        self._entries[name] = target
        if install_hint:
            self._hints[name] = install_hint
        return target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name`` (importing it if lazy)."""
        if name not in self._entries:
            raise FuxiopsError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            try:
                mod = importlib.import_module(module)
            except ImportError as e:
                hint = self._hints.get(name, "")
                raise FuxiopsError(f"{self.kind} {name!r} needs a package that is not installed ({e.name})"
                                   + (f"; install it with: {hint}" if hint else "")) from e
            entry = getattr(mod, attr)
            self._entries[name] = entry
        return entry

    def create(self, spec: str | Mapping[str, Mapping[str, Any] | None], **extra: Any) -> T:
        """Build an instance from ``"name"`` or ``{name: {kwargs}}``."""
        if isinstance(spec, str):
            name, kwargs = spec, {}
        elif isinstance(spec, Mapping) and len(spec) == 1:
            name, kw = next(iter(spec.items()))
            kwargs = dict(kw or {})
        else:
            raise FuxiopsError(f"a {self.kind} is given as a name or {{name: {{options}}}}, got {spec!r}")
        return self.get(name)(**kwargs, **extra)
