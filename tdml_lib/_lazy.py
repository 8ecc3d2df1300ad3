"""Lazy attributes for a package: a name is imported from its module on first use.

The top-level package, :mod:`tdml_lib.experiments` and :mod:`tdml_lib.runner` use it, so
``import tdml_lib`` stays fast and a chapter loads only the modules it uses. That matters
beyond speed: a stored result depends on the modules its chapter loaded (the runner records
them, :func:`tdml_lib.runner.registry.freshness` compares them), so an eager import of the
whole library would make every result go out of date with any edit.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Collection, Mapping


def make_lazy(package: str, names: Mapping[str, tuple[str, str]], submodules: Collection[str] = ()) -> None:
    """Give the package ``package`` lazy attributes.

    A name of ``names`` wins over a submodule of the same name: ``tdml_lib.runner.sweep``
    is the function even after the module ``tdml_lib.runner.sweep`` has been imported (the
    import system then sets the package attribute to the module, which PEP 562's module
    ``__getattr__`` alone would leave in place). Hence a module subclass, not ``__getattr__``.

    Args:
        package: the package's ``__name__``.
        names: ``{name: (module, attribute)}``; ``module`` relative to the package, with or
            without its leading dot (``"critic"``, ``".clustering"``, ``"..methods"``).
        submodules: submodules reachable as attributes (``tdml_lib.critic``).
    """
    def load(name: str) -> Any:
        module, attr = names[name]
        return getattr(importlib.import_module(module if module.startswith(".") else f".{module}", package),
                       attr)

    class LazyPackage(types.ModuleType):
        def __getattribute__(self, name: str) -> Any:
            if name in names:
                return load(name)
            return super().__getattribute__(name)

        def __getattr__(self, name: str) -> Any:
            if name in submodules:
                return importlib.import_module(f".{name}", package)
            raise AttributeError(f"module {package!r} has no attribute {name!r}")

        def __dir__(self) -> list[str]:
            return sorted(set(vars(self)) | set(names) | set(submodules))

    sys.modules[package].__class__ = LazyPackage
