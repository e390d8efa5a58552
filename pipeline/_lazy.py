"""Names a package exports but imports only when first used (PEP 562), so that importing the package,
or running ``pipeline --help``, does not pay for polars, httpx or uvicorn::

    __getattr__ = lazy_exports(__name__, {"pipeline.manifest.reader": ("read_manifest",)})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence

__all__ = ["lazy_exports"]


def lazy_exports(package: str, modules: Mapping[str, Sequence[str]]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``name`` from its module on first access."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name]), name)

    return __getattr__
