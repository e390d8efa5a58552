"""Why rows are "changed", and which of them an earlier model already generated (for ``pipeline plan``).

    history = history_frame(store.last_submitted(ids), options)  # the requests sent for those ids
    earlier_model_ids(changed, history, succeeded, options)      # ids generated before on another model
    changes = compare(changed, history, options)                  # {"model": 1000, "prompt": 12, ...}

``changed`` holds the compact rows of the planner (``_id``, the request columns, ``_prompt_h`` and
``_refs_h``: hashes of the prompt and of the reference list, ``_refkeys``); ``history`` holds the last
request sent for each (id, fingerprint) of those ids, oldest first (``history_frame``). Everything is
joins and column expressions: no per-row Python besides building the history frame and sha256 of the
earlier-model candidates that have reference images.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pipeline.manifest.fingerprint import REF_SEP, fingerprint_text_expr, hash_texts
from pipeline.request_columns import REQUEST_DTYPES
from pipeline.state.events import SubmittedEvent

__all__ = ["Changes", "compare", "earlier_model_ids", "history_frame", "prompt_hash", "refs_hash"]

_WAS = "_was"
REFERENCE_CONTENT = "reference content"


def prompt_hash(prompt: pl.Expr) -> pl.Expr:
    """A hash of the prompt (to compare with the ledger's without keeping a million prompts)."""
    return prompt.fill_null("").hash()


def refs_hash(refs: pl.Expr) -> pl.Expr:
    """A hash of a reference list as sent (resolved URLs, UUIDs and paths, in order; none: empty)."""
    return refs.list.join(REF_SEP).fill_null("").hash()


@dataclass
class Changes:
    """Changed rows per field that differs from the last request sent for the id."""

    fields: dict[str, int] = field(default_factory=dict)
    models: list[tuple[str, str, int]] = field(default_factory=list)  # (from, to, rows), most first


def history_frame(sent: Sequence[SubmittedEvent], options: Sequence[str]) -> pl.DataFrame:
    """``id, fingerprint``, the request fields and one text column per name in ``options`` (null when the
    request did not set it) of each ``submitted`` event of ``sent``, in order."""
    keys = {"id": pl.String(), "fingerprint": pl.String()}
    schema = {**keys, **REQUEST_DTYPES, **dict.fromkeys(options, pl.String())}
    rows = [_history_row(event, options) for event in sent]
    return pl.DataFrame(rows, schema=schema, orient="row")


def _history_row(event: SubmittedEvent, options: Sequence[str]) -> tuple[Any, ...]:
    request = event.request
    values = request.get("options") or {}
    chosen = [_text(values.get(name)) if isinstance(values, dict) else None for name in options]
    refs = request.get("reference_images") or []
    fields = [request.get(name) for name in REQUEST_DTYPES if name != "reference_images"]
    return (event.id, event.fingerprint, *fields, [str(r) for r in refs], *chosen)


def _text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value)


def earlier_model_ids(
    changed: pl.DataFrame, history: pl.DataFrame, succeeded: pl.DataFrame, options: Sequence[str]
) -> pl.Series:
    """Ids of ``changed`` rows that succeeded before on another model with the same prompt and the same
    references, by content: an earlier success's fingerprint, recomputed with this row's reference keys,
    must be its own (``pipeline.run.earlier_models.generated_by_earlier_model`` decides the same in a run).

    ``succeeded``: ``id, fingerprint`` of the state's succeeded rows (of these ids at least).
    """
    done = history.join(succeeded, on=["id", "fingerprint"], how="semi")
    done = done.unique(["id", "fingerprint"], keep="last")
    current = changed.select("_id", "_prompt_h", "_refkeys", _model="model")
    pairs = done.join(current, left_on="id", right_on="_id").filter(
        pl.col("model") != pl.col("_model"), prompt_hash(pl.col("prompt")) == pl.col("_prompt_h")
    )
    # Neither has references: nothing more to compare (no sha256 for the common case).
    none_before = pl.col("reference_images").list.len().fill_null(0) == 0
    plain = pairs.filter(pl.col("_refkeys").is_null() & none_before)["id"]
    with_refs = pairs.filter(pl.col("_refkeys").is_not_null())
    if with_refs.height:
        text = with_refs.select(fingerprint_text_expr(pl.col("_refkeys"), options).alias("_text"))
        same = hash_texts(text["_text"]) == with_refs["fingerprint"]
        plain = pl.concat([plain, with_refs.filter(same.fill_null(False))["id"]])
    return plain.unique()


def _differs(name: str, present: Sequence[str]) -> pl.Expr:
    current = pl.col(name) if name in present else pl.lit(None, dtype=pl.String)
    return current.cast(pl.String).fill_null("").ne(pl.col(name + _WAS).cast(pl.String).fill_null(""))


def _field_exprs(present: Sequence[str], options: Sequence[str]) -> dict[str, pl.Expr]:
    """For each field a user would name, whether a row's request differs from the one sent before."""
    exprs = {
        "model": _differs("model", present),
        "prompt": pl.col("_prompt_h") != prompt_hash(pl.col("prompt" + _WAS)),
        "size": _differs("width", present) | _differs("height", present),
        "quality": _differs("quality", present),
        "background": _differs("background", present),
        "output_format": _differs("output_format", present),
        "number_results": _differs("number_results", present),
        "reference images": pl.col("_refs_h") != refs_hash(pl.col("reference_images" + _WAS)),
    }
    for name in options:
        exprs[name] = _differs(name, present)
    visible = pl.any_horizontal(list(exprs.values()))
    exprs[REFERENCE_CONTENT] = visible.not_()  # same request as sent: a local reference's pixels changed
    return exprs


def compare(changed: pl.DataFrame, history: pl.DataFrame, options: Sequence[str]) -> Changes:
    """Count, per field, the ``changed`` rows whose request differs from the last one sent for the id."""
    if changed.height == 0:
        return Changes()
    last = history.unique("id", keep="last", maintain_order=True)
    was = last.rename({name: name + _WAS for name in last.columns if name != "id"})
    # A request the state did not record (none written by hand or by a foreign tool) explains nothing.
    pairs = changed.join(was.filter(pl.col("model" + _WAS).is_not_null()), left_on="_id", right_on="id")
    exprs = _field_exprs(changed.columns, options)
    flags = pairs.select(**exprs)
    counts = flags.sum().row(0, named=True)
    fields = {name: int(count) for name, count in counts.items() if count}
    switched = pairs.filter(flags["model"]).group_by("model" + _WAS, "model").len()
    models = [(old, new, int(n)) for old, new, n in switched.sort("len", descending=True).iter_rows()]
    return Changes(fields, models)
