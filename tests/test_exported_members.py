"""The package's public names: everything in ``__all__`` exists, and every public error is exported."""

from __future__ import annotations

import inspect

import pipeline
import pipeline.errors
import pipeline.sandbox


def test_all_names_exist() -> None:
    """Each name in ``pipeline.__all__`` and ``pipeline.sandbox.__all__`` resolves."""
    for module in (pipeline, pipeline.sandbox):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == [], f"{module.__name__}.__all__ names missing members: {missing}"


def test_every_error_class_is_exported() -> None:
    """A caller can catch any error of the pipeline by its public name."""
    errors = {
        name
        for name, obj in vars(pipeline.errors).items()
        if inspect.isclass(obj) and issubclass(obj, Exception) and not name.startswith("_")
    }
    assert errors <= set(pipeline.__all__), sorted(errors - set(pipeline.__all__))
