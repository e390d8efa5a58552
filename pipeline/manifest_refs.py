"""Per-row references: a reference set's images, then the row's own; resolved, counted and keyed.

refs = RowReferences(spec)   # loads spec.reference_sets (set_id -> image, one row per image)
frame = refs.apply(frame)    # adds _refs (list of resolved references) and _refkeys; rejects bad rows
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.errors import ManifestError
from pipeline.fingerprint import REF_SEP
from pipeline.jobspec import JobSpec
from pipeline.manifest_io import scan_table, table_errors
from pipeline.profiles import model_profiles
from pipeline.references import ReferenceProblem, ReferenceResolver, split_references

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


class RowReferences:
    """Resolves the references of each row of a manifest (local files relative to their own file)."""

    def __init__(self, spec: JobSpec) -> None:
        self._sets_path = spec.reference_sets
        self._sets = load_reference_sets(spec.reference_sets) if spec.reference_sets else {}
        self._manifest_refs = ReferenceResolver(spec.manifest.parent)
        self._set_refs = ReferenceResolver(spec.reference_sets.parent if spec.reference_sets else Path())
        self._max = {m: p.max_reference_images for m, p in model_profiles().items()}

    def apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Adds ``_refs`` and ``_refkeys``; a bad reference sets ``_reason`` on its row."""
        n = frame.height
        own = frame["reference_images"].to_list() if "reference_images" in frame.columns else [None] * n
        sets = (
            frame["reference_set"].cast(pl.String).to_list()
            if "reference_set" in frame.columns
            else [None] * n
        )
        reasons = frame["_reason"].to_list()
        models = frame["model"].to_list()
        refs: list[list[str] | None] = [None] * n
        keys: list[str | None] = [None] * n
        for i in range(n):
            if reasons[i] is not None or (own[i] is None and not sets[i]):
                continue
            try:
                resolved = self._resolve(own[i], sets[i], models[i])
            except ReferenceProblem as problem:
                reasons[i] = str(problem)
                continue
            refs[i] = [r for r, _ in resolved]
            keys[i] = REF_SEP.join(k for _, k in resolved)
        return frame.with_columns(
            pl.Series("_refs", refs, dtype=pl.List(pl.String)),
            pl.Series("_refkeys", keys, dtype=pl.String),
            pl.Series("_reason", reasons, dtype=pl.String),
        )

    def _resolve(self, own: object, set_id: str | None, model: str) -> list[tuple[str, str]]:
        resolved: list[tuple[str, str]] = []
        set_id = set_id.strip() if set_id else None
        if set_id:
            if set_id not in self._sets:
                hint = "" if self._sets_path else " (the job spec has no reference_sets file)"
                raise ReferenceProblem(f"unknown reference set {set_id!r}{hint}")
            for image in self._sets[set_id]:
                try:
                    resolved.append(self._set_refs.resolve(image))
                except ReferenceProblem as problem:
                    raise ReferenceProblem(f"reference set {set_id!r}: {problem}") from None
        resolved += [self._manifest_refs.resolve(ref) for ref in split_references(own)]
        limit = self._max.get(model, 0)
        if len(resolved) > limit:
            raise ReferenceProblem(
                f"too many reference images: {len(resolved)} (at most {limit} for {model})"
            )
        return resolved
