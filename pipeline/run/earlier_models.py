"""``[resume] keep_earlier_models``: whether a row was already generated on another model.

    successes = [(fp, settings_of(sent.request)) for fp, sent in store.successes_of(row.id)]
    generated_by_earlier_model(row, successes)   # True: same id, prompt and references, another model

A run asks this of each row the state has not seen under its own fingerprint (``pipeline.run.engine``);
``pipeline.output.plan.history.earlier_model_ids`` decides the same for a whole manifest in polars.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from pipeline.manifest.fingerprint import fingerprint, reference_key
from pipeline.rows import ImageRequest, Row
from pipeline.state.events import request_from_record

__all__ = ["generated_by_earlier_model", "settings_of"]


def generated_by_earlier_model(row: Row, successes: Iterable[tuple[str, ImageRequest]]) -> bool:
    """True when one of ``successes`` (``(fingerprint, settings_of(its request))`` of ``row.id``'s
    successes) was generated on another model with this row's prompt and reference images.

    Each earlier success's fingerprint is recomputed with this row's prompt and reference keys: it is its
    own only when both are the same, content included (a reference file edited in place is not the
    same). The row's local reference files are read only when it has a success on another model.
    """
    model, prompt = row.request.model, row.request.prompt
    candidates = [(fp, s) for fp, s in successes if s.model != model]
    if not candidates:
        return False
    keys = [reference_key(ref) for ref in row.request.reference_images]
    return any(fingerprint(replace(s, prompt=prompt), keys) == fp for fp, s in candidates)


def settings_of(request: Mapping[str, Any]) -> ImageRequest:
    """A submitted event's request without its prompt and references."""
    return replace(request_from_record(request), prompt="", reference_images=())
