"""Vectorised row rules: resolve each request field (row value or job default) and find the reject reason.

Pure polars expressions over a batch whose columns carry the field names (``prompt``, ``width``...)::

    frame.with_columns(resolve_exprs(columns, defaults)).with_columns(_reason=reason_expr(columns, profiles))

A reason is the first rule a row breaks, in this order: empty prompt, unparsable number, unknown model,
then the model's own rules (size, quality, background, format, number of results, prompt length).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import polars as pl

from pipeline.jobspec import Defaults
from pipeline.profiles import ModelProfile

__all__ = ["INT_FIELDS", "reason_expr", "resolve_exprs"]

INT_FIELDS = ("width", "height", "number_results")
_LOWER_FIELDS = ("quality", "background")


def _text(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.String).str.strip_chars()


def _whole_number(text: pl.Expr) -> pl.Expr:
    """``"1024"`` and ``"1024.0"`` (pandas writes integer columns with gaps as floats) -> 1024, else null."""
    return text.str.replace(r"^([+-]?\d+)\.0*$", "$1").cast(pl.Int64, strict=False)


def resolve_exprs(present: Collection[str], defaults: Defaults) -> list[pl.Expr]:
    """Each request field as the row's value when set, else the default; ``_raw_<int field>`` kept."""
    exprs: list[pl.Expr] = [pl.col("prompt").cast(pl.String).alias("prompt")]
    for name in INT_FIELDS:
        default = pl.lit(getattr(defaults, name), dtype=pl.Int64)
        if name in present:
            raw = _text(name).replace("", None)
            exprs.append(raw.alias(f"_raw_{name}"))
            exprs.append(pl.coalesce(_whole_number(raw), default).alias(name))
        else:
            exprs += [pl.lit(None, dtype=pl.String).alias(f"_raw_{name}"), default.alias(name)]
    for name in ("model", *_LOWER_FIELDS, "output_format"):
        default = pl.lit(str(getattr(defaults, name)))
        if name not in present:
            exprs.append(default.alias(name))
            continue
        value = _text(name).replace("", None)
        if name in _LOWER_FIELDS:
            value = value.str.to_lowercase()
        elif name == "output_format":
            value = value.str.to_uppercase().replace("JPEG", "JPG")
        exprs.append(pl.coalesce(value, default).alias(name))
    return exprs


def _rule(condition: pl.Expr, message: pl.Expr) -> pl.Expr:
    return pl.when(condition).then(message).otherwise(pl.lit(None, dtype=pl.String))


def _allowed(values: Collection[str]) -> str:
    return ", ".join(values)


def _model_rules(profile: ModelProfile) -> pl.Expr:
    size = pl.concat_str([pl.col("width"), pl.lit("x"), pl.col("height")])
    prompt_chars = pl.col("prompt").str.len_chars()
    return pl.coalesce(
        _rule(
            ~size.is_in(list(profile.sizes)),
            pl.format(
                f"size {{}} is not allowed for {profile.id} (allowed: {_allowed(profile.sizes)})", size
            ),
        ),
        _rule(
            ~pl.col("quality").is_in(list(profile.qualities)),
            pl.format(f"unknown quality '{{}}' (allowed: {_allowed(profile.qualities)})", pl.col("quality")),
        ),
        _rule(
            ~pl.col("background").is_in(list(profile.backgrounds)),
            pl.format(
                f"unknown background '{{}}' (allowed: {_allowed(profile.backgrounds)})", pl.col("background")
            ),
        ),
        _rule(
            ~pl.col("output_format").is_in(list(profile.output_formats)),
            pl.format(
                f"unknown output_format '{{}}' (allowed: {_allowed(profile.output_formats)})",
                pl.col("output_format"),
            ),
        ),
        _rule(
            (pl.col("number_results") < 1) | (pl.col("number_results") > profile.max_number_results),
            pl.format(
                f"number_results {{}} is out of range 1..{profile.max_number_results}",
                pl.col("number_results"),
            ),
        ),
        _rule(
            prompt_chars > profile.max_prompt_chars,
            pl.format(
                f"prompt too long: {{}} characters (at most {profile.max_prompt_chars} for {profile.id})",
                prompt_chars,
            ),
        ),
    )


def reason_expr(present: Collection[str], profiles: Mapping[str, ModelProfile]) -> pl.Expr:
    """The first rule each row breaks, or null; over columns produced by ``resolve_exprs``."""
    rules = [
        _rule(
            pl.col("prompt").is_null() | (pl.col("prompt").str.strip_chars() == ""),
            pl.lit("empty prompt"),
        )
    ]
    for name in INT_FIELDS:
        raw = pl.col(f"_raw_{name}")
        rules.append(
            _rule(
                raw.is_not_null() & _whole_number(raw).is_null(),
                pl.format(f"{name} '{{}}' is not a whole number", raw),
            )
        )
    by_model: pl.Expr = pl.format("unknown model '{}'", pl.col("model"))
    for model_id, profile in profiles.items():
        by_model = pl.when(pl.col("model") == model_id).then(_model_rules(profile)).otherwise(by_model)
    rules.append(by_model)
    return pl.coalesce(rules)
