"""Per-row references: a reference set's images, then the row's own; resolved, counted and keyed.

    refs = RowReferences(spec)   # loads spec.reference_sets (set_id -> image, one row per image)
    frame = refs.apply(frame)    # adds _refs (resolved references), _refkeys and _refn; rejects bad rows

How many references a model takes is a model rule (``manifest_rules``), checked over ``_refn``.

Vectorised: each distinct local path is resolved once in Python (``ReferenceResolver`` caches), a URL,
UUID or data URI stands for itself, and everything per row is a polars list or lookup expression, so a
million rows cost about a second.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.config.jobspec import JobSpec
from pipeline.errors import ManifestError
from pipeline.manifest.files import scan_table, table_errors
from pipeline.manifest.fingerprint import REF_SEP
from pipeline.manifest.references import (
    CONTROL_PATTERN,
    REMOTE_PATTERN,
    ReferenceProblem,
    ReferenceResolver,
    split_references,
)

__all__ = ["RowReferences", "load_reference_sets"]

_SET_COLUMNS = ("set_id", "image")


def load_reference_sets(path: Path) -> dict[str, list[str]]:
    """``set_id -> images`` in file order; missing columns or an unreadable file is a ``ManifestError``."""
    lf = scan_table(path)
    schema = lf.collect_schema()
    missing = [c for c in _SET_COLUMNS if c not in schema]
    if missing:
        raise ManifestError(
            path, f"a reference-sets file needs columns set_id and image; missing: {', '.join(missing)}"
        )
    with table_errors(path):
        frame = lf.select(pl.col(c).cast(pl.String).str.strip_chars() for c in _SET_COLUMNS).collect()
    sets: dict[str, list[str]] = {}
    for set_id, image in frame.iter_rows():
        if set_id and image:
            sets.setdefault(set_id, []).append(image)
    return sets


def _resolve_sets(sets: dict[str, list[str]], resolver: ReferenceResolver) -> pl.DataFrame:
    """One row per set: resolved references and keys (joined), count, or its first bad image."""
    rows: list[tuple[str, str | None, str | None, int, str | None]] = []
    for set_id, images in sets.items():
        try:
            resolved = [resolver.resolve(image) for image in images]
        except ReferenceProblem as problem:
            rows.append((set_id, None, None, 0, f"reference set {set_id!r}: {problem}"))
            continue
        refs, keys = REF_SEP.join(r for r, _ in resolved), REF_SEP.join(k for _, k in resolved)
        rows.append((set_id, refs, keys, len(resolved), None))
    schema = {"_set": pl.String, "_set_res": pl.String, "_set_key": pl.String, "_set_n": pl.Int64}
    return pl.DataFrame(rows, schema={**schema, "_set_problem": pl.String}, orient="row")


class RowReferences:
    """Resolves the references of each row of a manifest (local files relative to their own file)."""

    def __init__(self, spec: JobSpec) -> None:
        self._has_sets_file = spec.reference_sets is not None
        sets = load_reference_sets(spec.reference_sets) if spec.reference_sets else {}
        base = spec.reference_sets.parent if spec.reference_sets else Path()
        self._sets = _resolve_sets(sets, ReferenceResolver(base))
        self._resolver = ReferenceResolver(spec.manifest.parent)

    def apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Adds ``_refs`` (list, null when none), ``_refkeys`` and ``_refn`` (the count); a bad reference
        sets ``_reason``."""
        frame = frame.with_columns(**self._own_lists(frame))
        frame = frame.with_columns(**self._own(frame), **self._set_parts(frame))
        refs = pl.concat_str(["_set_res", "_own_res"], separator=REF_SEP, ignore_nulls=True)
        keys = pl.concat_str(["_set_key", "_own_key"], separator=REF_SEP, ignore_nulls=True)
        count = pl.col("_set_n").fill_null(0) + pl.col("_own_n").fill_null(0)
        reason = pl.coalesce("_reason", "_set_problem", "_own_problem")
        out = frame.with_columns(_reason=reason, _refkeys=pl.when(count > 0).then(keys), _refn=count)
        out = out.with_columns(_refs=pl.when(count > 0).then(refs.str.split(REF_SEP)))
        return out.drop("_own", "_own_res", "_own_key", "_own_n", "_own_problem").drop(
            "_set_res", "_set_key", "_set_n", "_set_problem"
        )

    def _own_lists(self, frame: pl.DataFrame) -> dict[str, pl.Expr | pl.Series]:
        """``_own``: the row's reference_images as a list; ``_own_parse``: why a cell could not be read."""
        if "reference_images" not in frame.columns:
            return {
                "_own": pl.lit(None, dtype=pl.List(pl.String)),
                "_own_parse": pl.lit(None, dtype=pl.String),
            }
        column = frame["reference_images"]
        if isinstance(column.dtype, pl.List):
            stripped = (
                pl.col("reference_images").cast(pl.List(pl.String)).list.eval(pl.element().str.strip_chars())
            )
            return {"_own": stripped, "_own_parse": pl.lit(None, dtype=pl.String)}
        if column.dtype != pl.String:
            column = column.cast(pl.String)
        return dict(zip(("_own", "_own_parse"), _parse_cells(column), strict=True))

    def _own(self, frame: pl.DataFrame) -> dict[str, pl.Expr]:
        """Of each accepted row's own references: resolved and keys (joined), count, first problem. A
        URL, UUID or data URI stands for itself; each distinct local path is resolved once."""
        element = pl.element()
        listed = pl.col("_own").list.eval(element.filter(element.is_not_null() & (element != "")))
        active = pl.col("_reason").is_null() & pl.col("_own").is_not_null()
        own = pl.when(active).then(listed)
        local = frame.select(own.explode().alias("_ref")).filter(~_remote(pl.col("_ref")))
        resolved = [self._resolve(ref) for ref in local["_ref"].unique().drop_nulls().to_list()]

        def joined(at: int) -> pl.Expr:  # remote references as given, local ones as resolved
            each = element.replace({ref: parts[at] for ref, *parts in resolved})
            return pl.when(count > 0).then(own.list.eval(each).list.join(REF_SEP))

        count = own.list.len()
        bad = {ref: problem for ref, _, _, problem in resolved if problem is not None}
        first_bad = own.list.eval(element.filter(element.is_in(list(bad)))).list.first()
        return {
            "_own_res": joined(0),
            "_own_key": joined(1),
            "_own_n": pl.when(count > 0).then(count.cast(pl.Int64)),
            "_own_problem": pl.coalesce(
                pl.col("_own_parse"), first_bad.replace_strict(bad, default=None, return_dtype=pl.String)
            ),
        }

    def _resolve(self, ref: str) -> tuple[str, str | None, str | None, str | None]:
        try:
            resolved, key = self._resolver.resolve(ref)
        except ReferenceProblem as problem:
            return (ref, None, None, str(problem))
        return (ref, resolved, key, None)

    def _set_parts(self, frame: pl.DataFrame) -> dict[str, pl.Expr]:
        """Of each row's reference set: resolved and keys (joined), count, or why it cannot be used."""
        names = ("_set_res", "_set_key", "_set_n", "_set_problem")
        if "reference_set" not in frame.columns:
            return {name: pl.lit(None, dtype=self._sets.schema[name]) for name in names}
        wanted = pl.col("reference_set").cast(pl.String).str.strip_chars().replace("", None)
        known = {
            name: wanted.replace_strict(
                dict(zip(self._sets["_set"], self._sets[name], strict=True)),
                default=None,
                return_dtype=self._sets.schema[name],
            )
            for name in names
        }
        hint = "" if self._has_sets_file else " (the job spec has no reference_sets file)"
        unknown = pl.format(f"unknown reference set '{{}}'{hint}", wanted)
        is_known = wanted.is_in(self._sets["_set"].implode())
        known["_set_problem"] = pl.when(is_known).then(known["_set_problem"]).otherwise(unknown)
        return known


def _remote(ref: pl.Expr) -> pl.Expr:
    """As given, never resolved: a URL, a Runware image UUID or a data URI (``references.is_remote``)."""
    return ref.str.contains(REMOTE_PATTERN) & ~ref.str.contains(CONTROL_PATTERN)


def _parse_cells(column: pl.Series) -> tuple[pl.Series, pl.Series]:
    """CSV cells: ``|``-separated lists split in polars; JSON arrays (rare) parsed in Python."""
    split = column.str.split("|").list.eval(pl.element().str.strip_chars())
    json_rows = column.str.starts_with("[").fill_null(False)
    lists: list[list[str] | None] = [None] * len(column)
    problems: list[str | None] = [None] * len(column)
    if not json_rows.any():
        return split, pl.Series(values=problems, dtype=pl.String)
    at = json_rows.arg_true().to_list()
    for i, cell in zip(at, column.gather(at).to_list(), strict=True):
        try:
            lists[i] = split_references(cell)
        except ReferenceProblem as problem:
            problems[i] = str(problem)
    parsed = pl.Series(values=lists, dtype=pl.List(pl.String))
    merged = pl.select(pl.when(json_rows).then(parsed).otherwise(split)).to_series()
    return merged, pl.Series(values=problems, dtype=pl.String)
