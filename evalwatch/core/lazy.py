"""Lazy re-exports for package ``__init__`` modules (no dependencies, so any layer may use it).

A package that re-exports names from heavy submodules (scipy, Great Expectations) lists them
per submodule and imports a submodule only when one of its names is first read.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__all__ = ["LazyExports"]


class LazyExports:
    """Where each re-exported name of a package lives, and the lookup its ``__getattr__`` does.

    Examples:
        >>> lazy = LazyExports("pkg", {"json": ("dumps",)})
        >>> lazy.names, lazy.get("dumps").__name__
        (['dumps'], 'dumps')
    """

    def __init__(self, package: str, exports: Mapping[str, tuple[str, ...]]) -> None:
        """Record the exports.

        Args:
            package: The package's ``__name__`` (its last part names it in errors).
            exports: Submodule -> the names it provides.
        """
        self._short = package.rsplit(".", 1)[-1]
        self._where = {name: module for module, names in exports.items() for name in names}
        #: The re-exported names, sorted: the package's ``__all__``.
        self.names = sorted(self._where)

    def get(self, name: str) -> Any:
        """The exported object ``name`` (imports its submodule on first use).

        Raises:
            AttributeError: If the package exports no such name.
        """
        module = self._where.get(name)
        if module is None:
            raise AttributeError(f"module {self._short!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)
