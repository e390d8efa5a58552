"""Vectorised row rules: resolve each request field of a row, then find why the row is rejected.

    rules = RowRules(columns.schema, spec.defaults)     # built once per manifest
    frame = rules.apply(batch)              # request fields, one column per option, and ``_reason``
    frame = rules.after_references(frame)   # the rules that need the reference count (``_refn``)

Resolution, per row: ``model`` is the row's, else ``[defaults]``'s. An option is the row's cell (an empty
cell is unset), else, when the row's model takes the option, the ``[defaults]`` value, else the profile's
default; every value becomes canonical text as ``OptionSpec.parse`` gives it (row cells through
``manifest_options``, constants through ``parse`` itself). The size is the row's, else ``[defaults]``'s,
else the model's default size; a lone width or height is completed from the next level, as in 0.1. A
model with a ``resolution`` option takes resolution OR width/height from the first level that sets
either (the model's own default size before its default resolution); both at one level reject the row.

A reason is the first rule a row breaks: empty prompt, unparsable number, unknown model, an option set
in the row that its model does not take, a value the model does not allow, the size, the output format,
the number of results, the prompt's length; after references, their count and resolution without them.
A ``[defaults]`` option that a row's model does not take is simply not applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl
import polars.selectors as cs

from pipeline.config.jobspec import Defaults, option_text
from pipeline.config.profiles import ModelProfile, OptionSpec, model_profiles, parse_size
from pipeline.manifest.options import canonical_expr, size_allowed_expr
from pipeline.request_columns import REQUEST_DTYPES
from pipeline.rows import LEGACY_OPTIONS, SETTINGS

__all__ = ["INT_FIELDS", "RESOLUTION", "RowRules"]

INT_FIELDS = tuple(name for name in SETTINGS if REQUEST_DTYPES[name] == pl.Int64)  # width, height, ...
RESOLUTION = "resolution"
NOT_BOTH = "give resolution or width/height, not both"
_NULL = pl.lit(None, dtype=pl.String)
_MODEL = pl.col("model")
_SIZE_KEYS = ["model", "width", "height"]
_KEYS = ("_raw_", "_row_", "_prompt_")  # the cells the rules read (and ``_SET_BY_ROW``), dropped after
_SET_BY_ROW = ("model", "output_format", "number_results")


def _whole_number(text: pl.Expr) -> pl.Expr:
    """``"1024"`` and ``"1024.0"`` (pandas writes integer columns with gaps as floats) -> 1024, else null."""
    return text.str.replace(r"^([+-]?\d+)\.0*$", "$1").cast(pl.Int64, strict=False)


def _cell(name: str, dtype: pl.DataType) -> pl.Expr:
    """A cell as stripped text, null when empty; a list or struct cell as JSON (which no rule allows)."""
    column = pl.col(name)
    text: pl.Expr
    if dtype.is_nested():
        text = pl.when(column.is_not_null()).then(pl.struct(column).struct.json_encode())
    else:
        text = column.cast(pl.String)
    return text.str.strip_chars().replace("", None)


def _rule(condition: pl.Expr, message: pl.Expr) -> pl.Expr:
    return pl.when(condition).then(message).otherwise(_NULL)


def _by_model(values: Mapping[str, object], dtype: type[pl.DataType] = pl.String) -> pl.Expr:
    """The value for each row's model (null for a model not in ``values``)."""
    if not values:
        return pl.lit(None, dtype=dtype)
    return _MODEL.replace_strict(dict(values), default=None, return_dtype=dtype)


def _takes(models: Iterable[str]) -> pl.Expr:
    return _MODEL.is_in(list(models))


def _not_allowed(name: str, value: str, model: str, spec: OptionSpec) -> str:
    shown = f"of {len(value)} characters" if spec.type == "str" else f"'{value}'"
    return f"{name} {shown} is not allowed for {model} (allowed: {spec.allowed()})"


class RowRules:
    """Resolution and reject rules for one manifest's columns, job defaults and model profiles."""

    def __init__(
        self,
        schema: Mapping[str, pl.DataType],
        defaults: Defaults,
        profiles: Mapping[str, ModelProfile] | None = None,
        sources: Mapping[str, str] | None = None,
    ) -> None:
        self._schema = dict(schema)
        self._defaults = defaults
        self._profiles = dict(model_profiles() if profiles is None else profiles)
        self._sources = dict(sources or {})
        declared = {name for p in self._profiles.values() for name in p.options}
        # quality, background and resolution always get a column: the fingerprint and size rules read them
        self.options: tuple[str, ...] = tuple(sorted(declared | {*LEGACY_OPTIONS, RESOLUTION}))
        self._in_rows = [name for name in self.options if name in self._schema]
        self._stages = [self._inputs(), self._resolved()]
        self._reason = self._reason_expr()

    def takers(self, option: str) -> list[str]:
        """The models that take ``option``."""
        return [m for m, p in self._profiles.items() if option in p.options]

    def apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Request fields (``model``, ``width``..., one column per option) and ``_reason``.

        The rules read a few cells of a row, and a batch has few distinct combinations of them: they
        are resolved and checked once per combination, then joined back to the rows.
        """
        rows = frame.with_columns(self._stages[0]).with_columns(self._prompt_keys())
        keys = [name for name in rows.columns if name.startswith(_KEYS) or name in _SET_BY_ROW]
        combos = rows.select(keys).unique().with_columns(self._stages[1])
        checked = self._with_size_problems(combos).with_columns(_reason=self._reason)
        order = [*rows.columns, *(name for name in checked.columns if name not in rows.columns)]
        kept = rows.drop((name for name in checked.columns if name not in keys), strict=False)
        out = kept.join(checked, on=keys, how="left", nulls_equal=True, maintain_order="left")
        return out.select(order).drop(cs.starts_with(*_KEYS, "_size_"))

    def _prompt_keys(self) -> list[pl.Expr]:
        """What the rules read of the prompt: whether it is blank, and its length where some model's
        bounds exclude it (elsewhere one value stands for every length all models allow)."""
        prompt = pl.col("prompt")
        chars = prompt.str.len_chars()
        if self._profiles:
            low = max(p.prompt.min_chars for p in self._profiles.values())
            high = min(p.prompt.max_chars for p in self._profiles.values())
            if low <= high:
                chars = pl.when(chars.is_between(low, high)).then(pl.lit(low, pl.UInt32)).otherwise(chars)
        blank = prompt.is_null() | (prompt.str.strip_chars() == "")
        return [blank.alias("_prompt_blank"), chars.alias("_prompt_chars")]

    # -- resolution ------------------------------------------------------------------------------------

    def _inputs(self) -> list[pl.Expr]:
        """The row's own cells (``_raw_*``, ``_row_*``) and the fields that only the row or job set."""
        d = self._defaults
        fmt = self._cell("output_format").str.to_uppercase().replace("JPEG", "JPG")
        number = _whole_number(self._cell("number_results"))
        return [
            pl.col("prompt").cast(pl.String).alias("prompt"),
            pl.coalesce(self._cell("model"), pl.lit(d.model)).alias("model"),
            pl.coalesce(fmt, pl.lit(d.output_format)).alias("output_format"),
            pl.coalesce(number, pl.lit(d.number_results, pl.Int64)).alias("number_results"),
            *(self._cell(name).alias(f"_raw_{name}") for name in INT_FIELDS),
            *(self._cell(name).alias(f"_row_{name}") for name in self._in_rows),
        ]

    def _cell(self, name: str) -> pl.Expr:
        dtype = self._schema.get(name)
        return _NULL if dtype is None else _cell(name, dtype)

    def _resolved(self) -> list[pl.Expr]:
        """Each option's canonical text (null: unset, not taken, or not allowed), and the size."""
        exprs = []
        for name in self.options:
            if name != RESOLUTION:
                job = self._defaults.options.get(name)
                exprs.append(self._option(name, self._fallback(name, job)[0]).alias(name))
        return exprs + self._size_exprs()

    def _option(self, name: str, fallback: Mapping[str, str]) -> pl.Expr:
        """The row's value when its cell is set, else the fallback for its model."""
        if name not in self._in_rows:
            return _by_model(fallback)
        row = pl.col(f"_row_{name}")
        return pl.when(row.is_not_null()).then(self._row_value(name)).otherwise(_by_model(fallback))

    def _row_value(self, name: str) -> pl.Expr:
        """The canonical text of the row's cell for its model (null: not taken or not allowed)."""
        value = _NULL
        if name not in self._in_rows:
            return value
        for spec, models in self._spec_groups(name):
            canonical = canonical_expr(spec, pl.col(f"_row_{name}"))
            value = pl.when(_takes(models)).then(canonical).otherwise(value)
        return value

    def _spec_groups(self, name: str) -> list[tuple[OptionSpec, list[str]]]:
        """The models taking ``name``, grouped by identical spec (fewer expressions to evaluate)."""
        groups: dict[OptionSpec, list[str]] = {}
        for model in self.takers(name):
            groups.setdefault(self._profiles[model].options[name], []).append(model)
        return list(groups.items())

    def _fallback(self, name: str, job: str | None) -> tuple[dict[str, str], dict[str, str]]:
        """Per model taking ``name``: the canonical text of ``job`` (a [defaults] value), else of the
        profile's default; and why ``job`` is not allowed, for the models that refuse it."""
        values: dict[str, str] = {}
        problems: dict[str, str] = {}
        for model in self.takers(name):
            spec = self._profiles[model].options[name]
            text = job if job is not None else (None if spec.default is None else option_text(spec.default))
            if text is None:
                continue
            try:
                values[model] = spec.parse(text)
            except ValueError:
                problems[model] = _not_allowed(name, text.strip(), model, spec)
        return values, problems

    def _levels(self) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
        """Where the size comes from: the row sets a side, the row sets any size, the job's applies."""
        d = self._defaults
        row_size = pl.col("_raw_width").is_not_null() | pl.col("_raw_height").is_not_null()
        at_row = row_size
        if RESOLUTION in self._in_rows:
            at_row = row_size | pl.col(f"_row_{RESOLUTION}").is_not_null()
        job_size = d.width is not None or d.height is not None
        job_res = RESOLUTION in d.options
        at_job = ~at_row & (pl.lit(job_size) | (_takes(self.takers(RESOLUTION)) & pl.lit(job_res)))
        return row_size, at_row, at_job

    def _size_exprs(self) -> list[pl.Expr]:
        d = self._defaults
        row_size, at_row, at_job = self._levels()
        sizes = {m: parse_size(p.sizes.default) for m, p in self._profiles.items() if p.sizes.default}
        model_w = _by_model({m: w for m, (w, _) in sizes.items()}, pl.Int64)
        model_h = _by_model({m: h for m, (_, h) in sizes.items()}, pl.Int64)
        job_sized = d.width is not None or d.height is not None

        def side(raw: str, job: int | None, model: pl.Expr) -> pl.Expr:
            row, job_side = _whole_number(pl.col(raw)), pl.lit(job, pl.Int64)
            return (
                pl.when(row_size)
                .then(pl.coalesce(row, job_side, model))
                .when(at_row)
                .then(None)
                .when(at_job)
                .then(pl.coalesce(job_side, model) if job_sized else None)
                .otherwise(model)
            )

        job_res = self._fallback(RESOLUTION, d.options.get(RESOLUTION))[0] if RESOLUTION in d.options else {}
        resolution = (
            pl.when(at_row)
            .then(self._row_value(RESOLUTION))
            .when(at_job)
            .then(_by_model(job_res))
            .otherwise(pl.when(model_w.is_null()).then(_by_model(self._fallback(RESOLUTION, None)[0])))
        )
        level = pl.when(at_row).then(pl.lit("row")).when(at_job).then(pl.lit("defaults"))
        return [
            side("_raw_width", d.width, model_w).alias("width"),
            side("_raw_height", d.height, model_h).alias("height"),
            resolution.alias(RESOLUTION),
            level.otherwise(pl.lit("model")).alias("_size_level"),
        ]

    def _with_size_problems(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``_size_problem`` per distinct (model, width, height): checked with polars, worded by
        ``SizeSpec.problem`` (the one place that says why), joined back to the rows."""
        combos = frame.select(_SIZE_KEYS).unique().drop_nulls()
        allowed = pl.lit(None, dtype=pl.Boolean)
        for model, profile in self._profiles.items():
            check = size_allowed_expr(profile.sizes, pl.col("width"), pl.col("height"))
            allowed = pl.when(_MODEL.eq(model)).then(check).otherwise(allowed)
        bad = combos.filter(allowed.not_())
        if bad.is_empty():
            return frame.with_columns(_size_problem=_NULL)
        problems = [
            f"size {w}x{h} is not allowed for {m} ({self._profiles[m].sizes.problem(w, h)})"
            for m, w, h in bad.iter_rows()
        ]
        table = bad.with_columns(_size_problem=pl.Series(problems, dtype=pl.String))
        return frame.join(table, on=_SIZE_KEYS, how="left", maintain_order="left")

    # -- reasons ---------------------------------------------------------------------------------------

    def _reason_expr(self) -> pl.Expr:
        return pl.coalesce(
            _rule(pl.col("_prompt_blank"), pl.lit("empty prompt")),
            *self._number_rules(),
            _rule(~_takes(self._profiles), pl.format("unknown model '{}'", _MODEL)),
            *(self._unsupported(name) for name in self._in_rows),
            *(self._value_rules(name) for name in self.options),
            *self._size_rules(),
            *self._model_rules(),
        )

    def _number_rules(self) -> list[pl.Expr]:
        rules = []
        for name in INT_FIELDS:
            raw = pl.col(f"_raw_{name}")
            broken = raw.is_not_null() & _whole_number(raw).is_null()
            rules.append(_rule(broken, pl.format(f"{name} '{{}}' is not a whole number", raw)))
        for name in ("width", "height"):
            rules.append(_rule(pl.col(name) < 1, pl.format(f"{name} {{}} must be at least 1", pl.col(name))))
        return rules

    def _unsupported(self, name: str) -> pl.Expr:
        """An option set in the row that its model does not take (a [defaults] one is not applied)."""
        hint = ""
        if self._sources.get(name, name) == name:  # a column 0.1 carried through as data
            hint = f"; the column '{name}' sets this option (rename the column to carry it through as data)"
        label = _by_model({m: f"{m} ({p.name})" for m, p in self._profiles.items()})
        message = pl.format(f"option {name} is not supported by {{}}{hint}", label)
        set_here = pl.col(f"_row_{name}").is_not_null() & _takes(self._profiles)
        return _rule(set_here & ~_takes(self.takers(name)), message)

    def _value_rules(self, name: str) -> pl.Expr:
        """A value the row's model does not allow: from the row's cell, or from [defaults]."""
        _, at_row, at_job = self._levels()
        job = self._defaults.options.get(name)
        job_problems = self._fallback(name, job)[1] if job is not None else {}
        if name == RESOLUTION:
            row_applies, job_applies = at_row, at_job
        else:
            row_applies = pl.col(f"_row_{name}").is_not_null() if name in self._in_rows else pl.lit(False)
            job_applies = ~row_applies
        rules = [_rule(job_applies, _by_model(job_problems))]
        if name in self._in_rows:
            cell = pl.col(f"_row_{name}")
            refused = row_applies & cell.is_not_null() & _takes(self.takers(name)) & pl.col(name).is_null()
            rules.insert(0, _rule(refused, self._row_problem(name, cell)))
        return pl.coalesce(rules)

    def _row_problem(self, name: str, cell: pl.Expr) -> pl.Expr:
        allowed = _by_model({m: self._profiles[m].options[name].allowed() for m in self.takers(name)})
        texts = [m for m in self.takers(name) if self._profiles[m].options[name].type == "str"]
        return (
            pl.when(_takes(texts))
            .then(
                pl.format(
                    f"{name} of {{}} characters is not allowed for {{}} (allowed: {{}})",
                    cell.str.len_chars(),
                    _MODEL,
                    allowed,
                )
            )
            .otherwise(
                pl.format(f"{name} '{{}}' is not allowed for {{}} (allowed: {{}})", cell, _MODEL, allowed)
            )
        )

    def _size_rules(self) -> list[pl.Expr]:
        width, height, level = pl.col("width"), pl.col("height"), pl.col("_size_level")
        takes_res = _takes(self.takers(RESOLUTION))
        row_res = pl.col(f"_row_{RESOLUTION}").is_not_null() if RESOLUTION in self._in_rows else pl.lit(False)
        row_size = pl.col("_raw_width").is_not_null() | pl.col("_raw_height").is_not_null()
        d = self._defaults
        job_both = (d.width is not None or d.height is not None) and RESOLUTION in d.options
        required = [m for m, p in self._profiles.items() if p.sizes.required]
        no_size = pl.format("no size for {}: set width and height", _MODEL)
        return [
            _rule(takes_res & row_size & row_res, pl.lit(NOT_BOTH)),
            _rule(
                takes_res & (level == "defaults") & pl.lit(job_both),
                pl.lit(f"{NOT_BOTH} ([defaults] sets both)"),
            ),
            _rule(
                width.is_not_null() & height.is_null(), pl.format("width {} without height: set both", width)
            ),
            _rule(
                height.is_not_null() & width.is_null(), pl.format("height {} without width: set both", height)
            ),
            _rule(
                width.is_null() & pl.col(RESOLUTION).is_null() & _takes(required),
                pl.when(takes_res).then(pl.format("{} or resolution", no_size)).otherwise(no_size),
            ),
            pl.col("_size_problem"),
        ]

    def _model_rules(self) -> list[pl.Expr]:
        """Output format, number of results and prompt length, with each model's bounds looked up."""
        fmt, count, model = pl.col("output_format"), pl.col("number_results"), _MODEL
        pairs = [f"{m}\x1f{f}" for m, p in self._profiles.items() for f in p.output_formats]
        formats = _by_model({m: ", ".join(p.output_formats) for m, p in self._profiles.items()})
        most = _by_model({m: p.max_number_results for m, p in self._profiles.items()}, pl.Int64)
        low = _by_model({m: p.prompt.min_chars for m, p in self._profiles.items()}, pl.Int64)
        high = _by_model({m: p.prompt.max_chars for m, p in self._profiles.items()}, pl.Int64)
        chars = pl.col("_prompt_chars")
        known_format = pl.concat_str([model, fmt], separator="\x1f").is_in(pairs)
        return [
            _rule(~known_format, pl.format("unknown output_format '{}' (allowed: {})", fmt, formats)),
            _rule(
                (count < 1) | (count > most),
                pl.format("number_results {} is out of range 1..{}", count, most),
            ),
            _rule(
                chars < low,
                pl.format("prompt too short: {} characters (at least {} for {})", chars, low, model),
            ),
            _rule(
                chars > high,
                pl.format("prompt too long: {} characters (at most {} for {})", chars, high, model),
            ),
        ]

    # -- after references ------------------------------------------------------------------------------

    def after_references(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Adds the reference rules to ``_reason``, over ``_refn`` (each row's reference count)."""
        count, model = pl.col("_refn"), _MODEL
        most = _by_model({m: p.references.max for m, p in self._profiles.items()}, pl.Int64)
        needs = [m for m, p in self._profiles.items() if p.sizes.resolution_needs_references]
        resolution = pl.col(RESOLUTION)
        reason = pl.coalesce(
            "_reason",
            _rule((most == 0) & (count > 0), pl.format("reference images are not supported by {}", model)),
            _rule(
                count > most,
                pl.format("too many reference images: {} (at most {} for {})", count, most, model),
            ),
            _rule(
                _takes(needs) & resolution.is_not_null() & (count == 0),
                pl.format(
                    "resolution {} needs reference images for {} (without them, set width and height)",
                    resolution,
                    model,
                ),
            ),
        )
        return frame.with_columns(_reason=reason)
