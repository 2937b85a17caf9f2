"""Lazy exports: a package names what it exports, and each name is imported on first use.

Every langroute package with heavy members (numpy, faiss, sentence-transformers, ...)
exports through :func:`lazy_exports`, so ``import langroute`` stays fast.

Example:
    >>> __getattr__, __dir__ = lazy_exports("demo", {"dumps": "json"}, ["dumps"], {})
    >>> __getattr__("dumps").__name__
    'dumps'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str,
    exports: Mapping[str, str],
    public: Sequence[str],
    namespace: dict[str, Any],
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of a package with lazy exports.

    Args:
        package: The package's name, for the error message.
        exports: Each exported name -> the module that defines it.
        public: The package's ``__all__``.
        namespace: The package's ``globals()``: an imported name is cached there.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__
