"""Manifests: formats, column mapping, overrides, references, ids, fingerprints and row rejects."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import polars as pl
import pytest
from helpers.manifest_jobs import image, load, read_all
from helpers.paths import V01_JOB

from pipeline.config.jobspec import Defaults, load_job_spec
from pipeline.config.profiles import ModelProfile
from pipeline.errors import ManifestError
from pipeline.manifest.fingerprint import fingerprint, request_fingerprint
from pipeline.manifest.reader import Reject
from pipeline.manifest.rules import RowRules
from pipeline.rows import ImageRequest

UUID = "3f0c1a52-0b1d-4c7e-9a55-1f2e3d4c5b6a"
DATA_URI = "data:image/png;base64,iVBORw0KGgo="


class TestFormats:
    def test_csv_rows_get_the_job_defaults_and_keep_other_columns(self, tmp_path: Path) -> None:
        """Blank settings take the defaults (the live default model and its profile's defaults);
        sku/locale pass through untouched; row numbers are 1-based."""
        spec = load(tmp_path, "id,prompt,sku,locale\na,a red chair,S-1,en-US\nb,a blue lamp,S-2,fr-FR\n")
        batch = read_all(spec)
        assert batch.rejects == []
        first, second = batch.rows
        assert (first.row_number, first.id, second.row_number, second.id) == (1, "a", 2, "b")
        assert first.request == ImageRequest(
            "openai:gpt-image@2", "a red chair", 1024, 1024, "medium", "", "JPG", 1
        )
        assert dict(second.passthrough) == {"sku": "S-2", "locale": "fr-FR"}

    def test_parquet_and_jsonl_read_the_same_rows_as_csv(self, tmp_path: Path) -> None:
        """The same manifest as CSV, Parquet (list column) and JSON Lines gives identical rows."""
        data = [
            {"id": "a", "prompt": "chair", "width": 1536, "reference_images": ["https://x.io/a.png", UUID]},
            {"id": "b", "prompt": "lamp", "width": None, "reference_images": None},
        ]
        csv = f'id,prompt,width,reference_images\na,chair,1536,"https://x.io/a.png|{UUID}"\nb,lamp,,\n'
        by_format = {}
        for name, manifest in [
            ("m.csv", csv),
            ("m.parquet", pl.DataFrame(data)),
            ("m.jsonl", data),
        ]:
            folder = tmp_path / name.replace(".", "_")
            folder.mkdir()
            by_format[name] = [
                (r.id, r.fingerprint, r.request) for r in read_all(load(folder, manifest, name=name)).rows
            ]
        assert by_format["m.csv"] == by_format["m.parquet"] == by_format["m.jsonl"]
        assert by_format["m.csv"][0][2].reference_images == ("https://x.io/a.png", UUID)

    def test_jsonl_columns_that_first_appear_late_are_read(self, tmp_path: Path) -> None:
        """A JSON Lines override or passthrough field seen only on row 10,005 is not dropped."""
        rows: list[dict[str, object]] = [{"id": f"r{i}", "prompt": "p"} for i in range(10_005)]
        rows[-1] = {"id": "last", "prompt": "p", "width": 1536, "note": "late"}
        last = read_all(load(tmp_path, rows, name="m.jsonl"), batch_size=5_000).rows[-1]
        assert (last.id, last.request.width, dict(last.passthrough)) == ("last", 1536, {"note": "late"})

    def test_batches_cover_every_row_once_in_order(self, tmp_path: Path) -> None:
        """Small batches still give every row once, in manifest order."""
        frame = pl.DataFrame({"id": [f"r{i}" for i in range(25)], "prompt": [f"p{i}" for i in range(25)]})
        spec = load(tmp_path, frame, name="m.parquet")
        from pipeline.manifest.reader import read_manifest

        sizes = [len(b.rows) for b in read_manifest(spec, batch_size=10)]
        assert sizes == [10, 10, 5]
        assert [r.row_number for r in read_all(spec, batch_size=7).rows] == list(range(1, 26))


class TestColumns:
    def test_columns_section_maps_fields_to_other_names(self, tmp_path: Path) -> None:
        """[columns] id = "sku", prompt = "text": the mapped columns become fields, not passthrough."""
        spec = load(
            tmp_path,
            "sku,text,size_w,category\nS-1,a chair,1536,seating\n",
            spec='[columns]\nid = "sku"\nprompt = "text"\nwidth = "size_w"\n',
        )
        (row,) = read_all(spec).rows
        assert (row.id, row.request.prompt, row.request.width) == ("S-1", "a chair", 1536)
        assert dict(row.passthrough) == {"category": "seating"}


class TestOverrides:
    def test_every_default_can_be_overridden_per_row(self, tmp_path: Path) -> None:
        """model, size, quality, background, format and number of results all come from the row when set."""
        spec = load(
            tmp_path,
            "id,prompt,model,width,height,quality,background,output_format,number_results\n"
            "a,p,openai:1@1,1024,1536,High,transparent,png,3\n"
            "b,p,,,,,,,\n",
        )
        a, b = read_all(spec).rows
        assert a.request == ImageRequest("openai:1@1", "p", 1024, 1536, "high", "transparent", "PNG", 3)
        assert b.request == ImageRequest("openai:gpt-image@2", "p", 1024, 1024, "medium", "", "JPG", 1)

    def test_whole_floats_from_pandas_count_as_numbers(self, tmp_path: Path) -> None:
        """A Parquet width column of floats (pandas, with gaps) works; 1024.5 is still rejected."""
        frame = pl.DataFrame({"id": ["a", "b", "c"], "prompt": ["p"] * 3, "width": [1536.0, None, 1024.5]})
        batch = read_all(load(tmp_path, frame, name="m.parquet"))
        assert [r.request.width for r in batch.rows] == [1536, 1024]
        assert batch.rejects[0].reason == "width '1024.5' is not a whole number"

    def test_job_defaults_apply_where_the_row_is_blank(self, tmp_path: Path) -> None:
        """[defaults] in the job spec replace the built-in ones."""
        spec = load(
            tmp_path,
            "id,prompt,quality\na,p,\nb,p,low\n",
            spec='[defaults]\nquality = "high"\nwidth = 1536\noutput_format = "WEBP"\n',
        )
        a, b = read_all(spec).rows
        assert (a.request.quality, a.request.width, a.request.output_format) == ("high", 1536, "WEBP")
        assert b.request.quality == "low"


class TestOptions:
    def test_an_option_comes_from_the_row_then_defaults_then_the_profile(self, tmp_path: Path) -> None:
        """Row cell first; else [defaults], only for models that take the option; else the profile's
        default. A [defaults] option a row's model does not take is left out, not rejected."""
        spec = load(
            tmp_path,
            "id,prompt,model,seed,rendering_speed,quality\n"
            "flux,a chair,runware:400@1,42,,\n"
            "flux-blank,a chair,runware:400@1,,,\n"
            "ideo,a chair,ideogram:4@0,,turbo,\n"
            "ideo-blank,a chair,ideogram:4@0,,,\n"
            "mini,a chair,openai:1@2,,,High\n"
            "gpt2,a chair,,,,\n",
            spec='[defaults]\nseed = 7\nsteps = 30\nquality = "low"\n',
        )
        batch = read_all(spec)
        assert batch.rejects == []
        got = {r.id: (r.request.quality, r.request.background, r.request.options) for r in batch.rows}
        assert got == {
            "flux": ("", "", (("seed", "42"), ("steps", "30"))),
            "flux-blank": ("", "", (("seed", "7"), ("steps", "30"))),
            "ideo": ("", "", (("rendering_speed", "TURBO"),)),
            "ideo-blank": ("", "", (("rendering_speed", "DEFAULT"),)),
            "mini": ("high", "opaque", ()),
            "gpt2": ("low", "", ()),
        }

    def test_typed_columns_give_the_same_values_as_text(self, tmp_path: Path) -> None:
        """Parquet ints, floats and booleans mean what their text means in a CSV; values become the
        profile's canonical text (30.0 -> 30, 7 -> 7.0, yes -> true, euler a -> Euler a)."""
        csv = (
            "id,prompt,model,seed,steps,cfg_scale,scheduler,prompt_upsampling\n"
            "a,a chair,runware:400@1,42,30.0,7,euler a,\n"
            "b,a chair,bfl:5@1,9,,,,yes\n"
        )
        frame = pl.DataFrame(
            {
                "id": ["a", "b"],
                "prompt": ["a chair"] * 2,
                "model": ["runware:400@1", "bfl:5@1"],
                "seed": [42, 9],
                "steps": [30.0, None],
                "cfg_scale": [7.0, None],
                "scheduler": ["euler a", None],
                "prompt_upsampling": [None, True],
            }
        )
        (tmp_path / "csv").mkdir()
        (tmp_path / "pq").mkdir()
        from_csv = read_all(load(tmp_path / "csv", csv)).rows
        from_parquet = read_all(load(tmp_path / "pq", frame, name="m.parquet")).rows
        assert [r.request for r in from_csv] == [r.request for r in from_parquet]
        assert from_csv[0].request.options == (
            ("cfg_scale", "7.0"),
            ("scheduler", "Euler a"),
            ("seed", "42"),
            ("steps", "30"),
        )
        assert from_csv[1].request.options == (("prompt_upsampling", "true"), ("seed", "9"))

    def test_columns_section_maps_option_columns(self, tmp_path: Path) -> None:
        """[columns] seed = "my_seed" makes my_seed the seed option; other columns still pass through."""
        spec = load(
            tmp_path,
            "id,prompt,model,my_seed,category\n"
            "a,a chair,runware:400@1,5,seating\n"
            "b,a lamp,openai:1@2,6,light\n",
            spec='[columns]\nseed = "my_seed"\n',
        )
        batch = read_all(spec)
        (row,) = batch.rows
        assert (row.request.option("seed"), dict(row.passthrough)) == ("5", {"category": "seating"})
        (reject,) = batch.rejects
        assert reject.reason == "option seed is not supported by openai:1@2 (GPT Image 1 Mini)"

    def test_a_column_0_1_passed_through_now_sets_the_option(self, tmp_path: Path) -> None:
        """A `seed` column that 0.1 carried as data is the seed option now: its reject says so."""
        batch = read_all(load(tmp_path, "id,prompt,model,seed\na,p,openai:1@2,7\nb,p,openai:1@2,\n"))
        assert [r.id for r in batch.rows] == ["b"]
        assert batch.rows[0].passthrough == {}
        assert batch.rejects[0].reason == (
            "option seed is not supported by openai:1@2 (GPT Image 1 Mini); the column 'seed' sets this "
            "option (rename the column to carry it through as data)"
        )

    def test_a_defaults_value_another_model_refuses_rejects_its_rows(self, tmp_path: Path) -> None:
        """[defaults] quality = "xhigh" suits GPT Image 2.5; a GPT Image 2 row it applies to is rejected."""
        spec = load(
            tmp_path,
            "id,prompt,model\na,p,openai:gpt-image@2.5-flare\nb,p,openai:gpt-image@2\n",
            spec='[defaults]\nmodel = "openai:gpt-image@2.5-flare"\nquality = "xhigh"\n',
        )
        batch = read_all(spec)
        assert [r.request.quality for r in batch.rows] == ["xhigh"]
        assert batch.rejects[0].reason == (
            "quality 'xhigh' is not allowed for openai:gpt-image@2 (allowed: low, medium, high, auto)"
        )


class TestSizes:
    def test_a_resolution_row_sends_no_width_or_height(self, tmp_path: Path) -> None:
        """A row that gives a resolution tier has no width/height; one that gives a size has no tier."""
        spec = load(
            tmp_path,
            "id,prompt,model,resolution,width,height,reference_images\n"
            "tier,a vase,google:4@3,2k,,,https://x.io/a.png\n"
            "size,a vase,google:4@3,,1264,848,\n"
            "blank,a vase,google:4@3,,,,\n",
        )
        rows = {r.id: r.request for r in read_all(spec).rows}
        assert (rows["tier"].width, rows["tier"].height, rows["tier"].option("resolution")) == (
            None,
            None,
            "2K",
        )
        assert (rows["size"].size, rows["size"].option("resolution")) == ("1264x848", None)
        assert (rows["blank"].size, rows["blank"].option("resolution")) == ("1024x1024", None)

    def test_the_row_beats_defaults_which_apply_only_to_models_that_take_them(self, tmp_path: Path) -> None:
        """[defaults] resolution = "1K": Nano Banana rows without a size get it, a row's own size wins,
        and GPT Image rows (no resolution option) keep their default size."""
        spec = load(
            tmp_path,
            "id,prompt,model,width,height,reference_images\n"
            "banana,a vase,google:4@3,,,https://x.io/a.png\n"
            "banana-sized,a vase,google:4@3,1264,848,\n"
            "gpt,a vase,openai:gpt-image@2,,,\n",
            spec='[defaults]\nresolution = "1K"\n',
        )
        rows = {r.id: r.request for r in read_all(spec).rows}
        assert (rows["banana"].size, rows["banana"].width) == ("1K", None)
        assert (rows["banana-sized"].size, rows["banana-sized"].option("resolution")) == ("1264x848", None)
        assert (rows["gpt"].size, rows["gpt"].option("resolution")) == ("1024x1024", None)

    def test_defaults_with_both_a_size_and_a_resolution_reject_the_rows_that_take_both(
        self, tmp_path: Path
    ) -> None:
        """[defaults] width/height and resolution: ambiguous for Nano Banana rows only."""
        spec = load(
            tmp_path,
            "id,prompt,model\nbanana,a vase,google:4@3\ngpt,a vase,openai:gpt-image@2\n",
            spec='[defaults]\nwidth = 1024\nheight = 1024\nresolution = "1K"\n',
        )
        batch = read_all(spec)
        assert [r.id for r in batch.rows] == ["gpt"]
        assert batch.rejects[0].reason == "give resolution or width/height, not both ([defaults] sets both)"

    def test_a_lone_width_is_completed_from_the_next_level(self, tmp_path: Path) -> None:
        """As in 0.1: a row's width alone takes the [defaults] height, else the model's default height."""
        spec = load(
            tmp_path,
            "id,prompt,width,height\na,p,1536,\nb,p,,1280\nc,p,,\n",
            spec="[defaults]\nheight = 1536\n",
        )
        assert [r.request.size for r in read_all(spec).rows] == ["1536x1536", "1024x1280", "1024x1536"]


def _test_profile(model_id: str, sizes: dict[str, object]) -> ModelProfile:
    return ModelProfile.model_validate(
        {
            "id": model_id,
            "name": model_id,
            "keys": ["positivePrompt", "width", "height"],
            "sizes": sizes,
            "prompt": {"max_chars": 100},
            "price": {"kind": "flat", "usd": "0.01"},
        }
    )


TEST_PROFILES = {
    "test:free@1": _test_profile("test:free@1", {"min_side": 256, "max_side": 2048, "required": False}),
    "test:fixed@1": _test_profile("test:fixed@1", {"fixed": ["512x512"]}),
}


class TestSizesWithoutDefaults:
    @pytest.mark.parametrize(
        ("model", "width", "height", "outcome"),
        [
            ("test:free@1", None, None, (None, None, None)),
            ("test:free@1", "512", None, (512, None, "width 512 without height: set both")),
            ("test:fixed@1", None, None, (None, None, "no size for test:fixed@1: set width and height")),
            ("test:fixed@1", "512", "512", (512, 512, None)),
        ],
    )
    def test_a_model_without_a_default_size(
        self, model: str, width: str | None, height: str | None, outcome: tuple[object, ...]
    ) -> None:
        """sizes.required = false and no default: the row may send no size; a lone side has nothing to
        complete it; a model that needs a size and has no default rejects a row that gives none."""
        frame = pl.DataFrame(
            {"prompt": ["a chair"], "model": [model], "width": [width], "height": [height]},
            schema={"prompt": pl.String, "model": pl.String, "width": pl.String, "height": pl.String},
        )
        rules = RowRules(frame.schema, Defaults(model="test:free@1"), profiles=TEST_PROFILES)
        out = rules.apply(frame)
        assert (out["width"][0], out["height"][0], out["_reason"][0]) == outcome


class TestReferences:
    def test_csv_cells_may_hold_json_arrays_or_pipe_separated_lists(self, tmp_path: Path) -> None:
        """URLs, Runware UUIDs and data URIs are kept as given; local files become absolute paths."""
        local = image(tmp_path / "refs" / "a.png")
        spec = load(
            tmp_path,
            "id,prompt,reference_images\n"
            f'a,p,"[""refs/a.png"", ""{UUID}""]"\n'
            f'b,p,"https://x.io/b.png | {DATA_URI}"\n',
        )
        a, b = read_all(spec).rows
        assert a.request.reference_images == (str(local.resolve()), UUID)
        assert b.request.reference_images == ("https://x.io/b.png", DATA_URI)

    def test_reference_set_images_come_first_then_the_rows_own(self, tmp_path: Path) -> None:
        """A reference set is joined on set_id; its local images are relative to the sets file."""
        front = image(tmp_path / "sets" / "front.png")
        own = image(tmp_path / "own.jpg", (0, 90, 0))
        (tmp_path / "sets").mkdir(exist_ok=True)
        spec = load(
            tmp_path,
            "id,prompt,reference_set,reference_images\na,p,chair,own.jpg\nb,p,,\n",
            sets="set_id,image\nchair,sets/front.png\nchair,https://x.io/side.png\n",
        )
        a, b = read_all(spec).rows
        assert a.request.reference_images == (
            str(front.resolve()),
            "https://x.io/side.png",
            str(own.resolve()),
        )
        assert b.request.reference_images == ()


class TestIds:
    def test_without_an_id_column_ids_are_stable_content_hashes(self, tmp_path: Path) -> None:
        """Ids are 16 hex digits, differ per row, and survive re-reading and column reordering."""
        first = [r.id for r in read_all(load(tmp_path, "prompt,sku\nchair,S-1\nlamp,S-2\n")).rows]
        again = [r.id for r in read_all(load(tmp_path, "sku,prompt\nS-1,chair\nS-2,lamp\n")).rows]
        assert first == again
        assert len(set(first)) == 2
        assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in first)

    def test_duplicate_ids_are_found_across_batches(self, tmp_path: Path) -> None:
        """The first row with an id keeps it; a later one is rejected even in another batch."""
        spec = load(tmp_path, "id,prompt\na,p1\nb,p2\nc,p3\nd,p4\na,p5\n")
        batch = read_all(spec, batch_size=2)
        assert [r.id for r in batch.rows] == ["a", "b", "c", "d"]
        assert batch.rejects == [Reject(5, "a", "duplicate id 'a' (first on row 1)")]

    def test_identical_rows_without_ids_are_duplicates_across_batches(self, tmp_path: Path) -> None:
        """Two rows with the same content get the same content id: the later one is rejected."""
        batch = read_all(load(tmp_path, "prompt,sku\nchair,S\nlamp,S\nsofa,S\nchair,S\n"), batch_size=2)
        assert len(batch.rows) == 3
        (reject,) = batch.rejects
        assert (reject.row_number, reject.id, reject.reason) == (
            4,
            batch.rows[0].id,
            "duplicate row: same content as row 1",
        )


class TestFingerprint:
    def test_manifest_fingerprints_equal_the_pure_function(self, tmp_path: Path) -> None:
        """What the manifest computes vectorised is what fingerprint(request, keys) computes."""
        image(tmp_path / "a.png")
        spec = load(
            tmp_path,
            "id,prompt,reference_images,number_results\n"
            "a,Ünïcode prompt ✓ with | bars,a.png|https://x.io/b.png,2\n"
            "b,plain,,\n",
        )
        for row in read_all(spec).rows:
            assert row.fingerprint == request_fingerprint(row.request)
            assert re.fullmatch(r"[0-9a-f]{64}", row.fingerprint)

    def test_fingerprints_with_options_and_mixed_models_equal_the_pure_function(self, tmp_path: Path) -> None:
        """Rows with options, a resolution and no size, and several models in one manifest: the
        vectorised fingerprint is still fingerprint(request, keys)."""
        image(tmp_path / "a.png")
        spec = load(
            tmp_path,
            "id,prompt,model,seed,steps,cfg_scale,resolution,rendering_speed,quality,reference_images\n"
            "flux,a chair,runware:400@1,42,30.0,7,,,,\n"
            "flux-bare,a chair,runware:400@1,,,,,,,\n"
            "banana,a chair,google:4@3,5,,,2k,,,a.png\n"
            "ideo,a chair,ideogram:4@0,,,,,turbo,,\n"
            "mini,a chair,openai:1@2,,,,,,High,https://x.io/b.png\n"
            "gpt2,a chair,,,,,,,,\n",
            spec="[defaults]\nseed = 7\n",
        )
        batch = read_all(spec)
        assert batch.rejects == []
        rows = {row.id: row for row in batch.rows}
        assert rows["flux"].request.options == (("cfg_scale", "7.0"), ("seed", "42"), ("steps", "30"))
        banana = rows["banana"].request
        assert (banana.width, banana.height, banana.options) == (
            None,
            None,
            (("resolution", "2K"), ("seed", "5")),
        )
        for row in batch.rows:
            assert row.fingerprint == request_fingerprint(row.request), row.id
        assert len({row.fingerprint for row in batch.rows}) == len(batch.rows)

    @pytest.mark.parametrize(
        "change",
        [
            {"model": "openai:1@1"},
            {"prompt": "other"},
            {"width": 1536},
            {"height": 1536},
            {"quality": "low"},
            {"background": "transparent"},
            {"output_format": "PNG"},
            {"number_results": 2},
            {"reference_images": ("https://x.io/a.png",)},
            {"options": (("seed", "7"),)},
            {"options": (("moderation", "low"),)},
            {"width": None, "height": None, "options": (("resolution", "1K"),)},
        ],
    )
    def test_every_field_changes_the_fingerprint(self, change: dict[str, object]) -> None:
        """Each field that determines the image changes the fingerprint."""
        base = dict(
            model="openai:1@2",
            prompt="p",
            width=1024,
            height=1024,
            quality="medium",
            background="opaque",
            output_format="JPG",
            number_results=1,
        )
        before = ImageRequest(**base)  # type: ignore[arg-type]
        after = ImageRequest(**{**base, **change})  # type: ignore[arg-type]
        assert request_fingerprint(before) != request_fingerprint(after)

    def test_local_references_count_by_content_not_by_name(self, tmp_path: Path) -> None:
        """Renaming a local reference keeps the fingerprint; changing its pixels changes it."""
        image(tmp_path / "a.png", (1, 2, 3))
        first = read_all(load(tmp_path, "id,prompt,reference_images\nx,p,a.png\n")).rows[0].fingerprint
        (tmp_path / "a.png").rename(tmp_path / "b.png")
        renamed = read_all(load(tmp_path, "id,prompt,reference_images\nx,p,b.png\n")).rows[0].fingerprint
        image(tmp_path / "b.png", (9, 9, 9))
        repainted = read_all(load(tmp_path, "id,prompt,reference_images\nx,p,b.png\n")).rows[0].fingerprint
        assert first == renamed != repainted

    def test_fingerprint_is_a_pure_function_of_request_and_keys(self) -> None:
        """Same inputs, same hash; other reference keys, other hash."""
        request = ImageRequest("openai:1@2", "p", 1024, 1024, "medium", "opaque", "JPG", 1, ("/x/a.png",))
        assert fingerprint(request, ["sha256:aa"]) == fingerprint(request, ["sha256:aa"])
        assert fingerprint(request, ["sha256:aa"]) != fingerprint(request, ["sha256:bb"])


SEVENTEEN = "|".join(f"https://x.io/{i}.png" for i in range(17))

ROW_REJECTS = [
    (
        "size",
        "id,prompt,model,width,height\nr,p,openai:1@2,2048,512\n",
        "size 2048x512 is not allowed for openai:1@2 (allowed: 1024x1024, 1536x1024, 1024x1536)",
    ),
    (
        "size for the row's model",
        "id,prompt,model,width\nr,p,openai:1@1,640\n",
        "size 640x1024 is not allowed for openai:1@1",
    ),
    (
        "size off the step",
        "id,prompt,model,width,height\nr,p,runware:400@1,1000,1000\n",
        "size 1000x1000 is not allowed for runware:400@1 (sides must be multiples of 16)",
    ),
    (
        "size out of the aspect band",
        "id,prompt,width,height\nr,p,3840,480\n",
        "size 3840x480 is not allowed for openai:gpt-image@2 (aspect ratio at most 3:1)",
    ),
    (
        "size out of the pixel band",
        "id,prompt,model,width,height\nr,p,bytedance:seedream@4.5,1024,1024\n",
        "size 1024x1024 is not allowed for bytedance:seedream@4.5 (at least 3,686,400 pixels)",
    ),
    (
        "quality",
        "id,prompt,quality\nr,p,ultra\n",
        "quality 'ultra' is not allowed for openai:gpt-image@2 (allowed: low, medium, high, auto)",
    ),
    (
        "background",
        "id,prompt,model,background\nr,p,openai:1@2,checkered\n",
        "background 'checkered' is not allowed for openai:1@2 (allowed: opaque, transparent, auto)",
    ),
    (
        "option the model does not take",
        "id,prompt,background\nr,p,transparent\n",
        "option background is not supported by openai:gpt-image@2 (GPT Image 2)",
    ),
    (
        "seed on a model without seeds",
        "id,prompt,model,seed\nr,p,openai:1@2,7\n",
        "option seed is not supported by openai:1@2 (GPT Image 1 Mini); the column 'seed' sets this option",
    ),
    (
        "integer out of range",
        "id,prompt,model,steps\nr,p,runware:400@1,51\n",
        "steps '51' is not allowed for runware:400@1 (allowed: an integer 1..50)",
    ),
    (
        "not an integer",
        "id,prompt,model,seed\nr,p,runware:400@1,7.5\n",
        "seed '7.5' is not allowed for runware:400@1 (allowed: an integer 1..2147483647)",
    ),
    (
        "enum value",
        "id,prompt,model,rendering_speed\nr,p,ideogram:4@0,WARP\n",
        "rendering_speed 'WARP' is not allowed for ideogram:4@0 (allowed: TURBO, DEFAULT, QUALITY)",
    ),
    (
        "resolution the model does not list",
        "id,prompt,model,resolution,reference_images\nr,vase,google:4@3,8K,https://x.io/a.png\n",
        "resolution '8K' is not allowed for google:4@3 (allowed: 0.5K, 1K, 2K, 4K)",
    ),
    (
        "resolution and size",
        "id,prompt,model,resolution,width,height\nr,vase,google:4@3,1K,1024,1024\n",
        "give resolution or width/height, not both",
    ),
    (
        "resolution without references",
        "id,prompt,model,resolution\nr,vase,google:4@3,2K\n",
        "resolution 2K needs reference images for google:4@3",
    ),
    ("format", "id,prompt,output_format\nr,p,GIF\n", "unknown output_format 'GIF'"),
    ("not a number", "id,prompt,width\nr,p,wide\n", "width 'wide' is not a whole number"),
    ("negative size", "id,prompt,width,height\nr,p,-1024,1024\n", "width -1024 must be at least 1"),
    ("number of results", "id,prompt,number_results\nr,p,11\n", "number_results 11 is out of range 1..10"),
    (
        "too many references",
        f"id,prompt,reference_images\nr,p,{SEVENTEEN}\n",
        "too many reference images: 17 (at most 16 for openai:gpt-image@2)",
    ),
    (
        "references on a model without any",
        "id,prompt,model,reference_images\nr,p,ideogram:4@0,https://x.io/a.png\n",
        "reference images are not supported by ideogram:4@0",
    ),
    (
        "missing local file",
        "id,prompt,reference_images\nr,p,nope.png\n",
        "reference image not found: nope.png",
    ),
    (
        "not an image",
        "id,prompt,reference_images\nr,p,job.toml\n",
        "reference image job.toml is not a PNG, JPEG or WEBP",
    ),
    (
        "bad JSON array",
        'id,prompt,reference_images\nr,p,"[""a.png"""\n',
        "reference_images is not a valid JSON array",
    ),
    ("empty prompt", "id,prompt\nr,\n", "empty prompt"),
    ("blank prompt", "id,prompt\nr,   \n", "empty prompt"),
    (
        "too-long prompt",
        "id,prompt\nr," + "x" * 32001 + "\n",
        "prompt too long: 32001 characters (at most 32000",
    ),
    (
        "too-short prompt",
        "id,prompt,model\nr,ab,google:4@3\n",
        "prompt too short: 2 characters (at least 3 for google:4@3)",
    ),
    ("unknown reference set", "id,prompt,reference_set\nr,p,sofa\n", "unknown reference set 'sofa'"),
    ("empty id", "id,prompt\n,p\n", "empty id"),
]


class TestRowRejects:
    @pytest.mark.parametrize(("case", "row", "reason"), ROW_REJECTS, ids=[c[0] for c in ROW_REJECTS])
    def test_a_bad_row_is_rejected_with_its_number_id_and_reason(
        self, tmp_path: Path, case: str, row: str, reason: str
    ) -> None:
        """The bad row becomes a reject naming the problem; the good rows around it still go."""
        header, bad = row.splitlines()
        good = ",".join(
            ["good-1" if c == "id" else "fine" if c == "prompt" else "" for c in header.split(",")]
        )
        good2 = good.replace("good-1", "good-2")
        spec = load(
            tmp_path, f"{header}\n{good}\n{bad}\n{good2}\n", sets="set_id,image\nlamp,https://x.io/l.png\n"
        )
        batch = read_all(spec)
        assert [r.id for r in batch.rows] == ["good-1", "good-2"]
        (reject,) = batch.rejects
        assert reject.row_number == 2
        assert reject.id == ("r" if case != "empty id" else None)
        assert reason in reject.reason

    def test_a_set_with_a_missing_file_rejects_the_rows_that_use_it(self, tmp_path: Path) -> None:
        """A broken reference set only rejects its own rows, naming the set."""
        spec = load(
            tmp_path, "id,prompt,reference_set\na,p,broken\nb,p,\n", sets="set_id,image\nbroken,gone.png\n"
        )
        batch = read_all(spec)
        assert [r.id for r in batch.rows] == ["b"]
        assert batch.rejects[0].reason.startswith(
            "reference set 'broken': reference image not found: gone.png"
        )


class TestEngineInterface:
    def test_reading_leaves_no_snapshot_behind(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The private Parquet snapshot is removed once the batches are read (or the file was bad)."""
        monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
        (tmp_path / "tmp").mkdir()
        import tempfile

        monkeypatch.setattr(tempfile, "tempdir", None)
        read_all(load(tmp_path, "id,prompt\na,p\n"))
        with pytest.raises(ManifestError):
            read_all(load(tmp_path, "id,prompt,model\na,p,nope\n"))
        assert list((tmp_path / "tmp").iterdir()) == []

    def test_snapshots_of_killed_processes_are_removed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A run killed with SIGKILL leaves its snapshot; the next read removes it (live ones stay)."""
        import os
        import subprocess
        import sys
        import tempfile

        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
        orphan = tmp_path / f"pipeline-manifest-{int(dead.stdout)}-abc"
        live = tmp_path / f"pipeline-manifest-{os.getpid()}-def"
        orphan.mkdir()
        live.mkdir()
        read_all(load(tmp_path, "id,prompt\na,p\n"))
        assert not orphan.exists()
        assert live.exists()

    def test_parquet_ids_and_passthrough_keep_their_types(self, tmp_path: Path) -> None:
        """Integer ids become strings; passthrough values keep their Parquet types."""
        frame = pl.DataFrame({"id": [7, 8], "prompt": ["a", "b"], "price": [9.5, 1.25], "tags": [["x"], []]})
        rows = read_all(load(tmp_path, frame, name="m.parquet")).rows
        assert [r.id for r in rows] == ["7", "8"]
        assert dict(rows[0].passthrough) == {"price": 9.5, "tags": ["x"]}

    def test_fingerprint_ids_limits_hashing_to_those_ids(self, tmp_path: Path) -> None:
        """Rows outside fingerprint_ids get no fingerprint; the others get the usual one."""
        from pipeline.manifest.reader import open_manifest

        spec = load(tmp_path, "id,prompt\na,p\nb,q\n")
        full = {r.id: r.fingerprint for r in read_all(spec).rows}
        with open_manifest(spec) as manifest:
            (frame,) = manifest.frames(fingerprint_ids=pl.Series(["b"]))
        assert dict(zip(frame["_id"], frame["_fp"], strict=True)) == {"a": None, "b": full["b"]}

    def test_checked_frames_hash_on_demand_to_the_same_fingerprints(self, tmp_path: Path) -> None:
        """A checked batch has no ``_fp``; its digests are the fingerprints' bytes (None when rejected)."""
        from pipeline.manifest.reader import open_manifest

        spec = load(
            tmp_path, "id,prompt,seed\na,p,\nb,,\nc,q,7\n", spec='[defaults]\nmodel = "runware:400@1"\n'
        )
        full = {r.id: r.fingerprint for r in read_all(spec).rows}
        with open_manifest(spec) as manifest:
            (frame,) = manifest.checked_frames()
            digests = manifest.digests(frame)
        assert "_fp" not in frame.columns
        assert [d and d.hex() for d in digests] == [full["a"], None, full["c"]]


@pytest.mark.parametrize(
    "ref",
    [
        "https://x.io/a.png",
        "HTTP://x.io/a.png",
        "Data:image/png;base64,AA==",
        UUID,
        UUID.upper(),
        UUID + "x",
        "refs/a.png",
        "/abs/a.png",
        "httpsx://a",
        "3f0c1a52-0b1d-4c7e-9a55",
    ],
)
def test_vectorised_remote_test_agrees_with_is_remote(ref: str) -> None:
    """The polars regex and the Python function classify references the same way."""
    from pipeline.manifest.references import REMOTE_PATTERN, is_remote

    assert pl.Series([ref]).str.contains(REMOTE_PATTERN)[0] == is_remote(ref)


# A 1x1 PNG written byte for byte, so 0.1 and this version hash the same reference content.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mP4z8AAAAMBAQD3A0FDAAAAAElFTkSuQmCC"
)

# Job specs and manifests as 0.1 allowed them, with the fingerprints the 0.1 code computed for each row
# (image-pipeline 0.1.0, commit f5be495, `read_manifest` over exactly these files).
UPGRADE_CASES = {
    "model in [defaults]": (
        '[defaults]\nmodel = "openai:1@2"\n',
        "id,prompt,model,width,height,quality,background,output_format,number_results,reference_images,sku\n"
        "plain,a red chair,,,,,,,,,S-1\n"
        "low-transparent,a red chair,,,,low,transparent,,,,S-2\n"
        "high-auto,a red chair,,,,High,auto,,,,\n"
        "auto,a blue lamp,,,,auto,,,,,\n"
        "wide,a blue lamp,,1536,1024,,,,,,\n"
        "tall,a blue lamp,,1024,1536,,,,,,\n"
        "png,a sofa,,,,,,PNG,,,\n"
        "two,a sofa,,,,,,,2,,\n"
        "gpt1,a sofa,openai:1@1,,,,,,,,\n"
        "url,a mug,,,,,,,,https://x.io/a.png,\n"
        f"mixed-refs,a mug,,,,,,,,ref.png|{UUID},\n"
        'datauri,a cup,,,,,,,,"data:image/png;base64,iVBORw0KGgo=",\n'
        "unicode,Ünïcode ✓ prompt,,,,,,jpeg,,,\n"
        "width-only,a desk,,1536,,,,,,,\n",
        {
            "plain": "2632c94e84af229fd69a56bc3bc59111e263e54d93084757d1b0911b1fa1761d",
            "low-transparent": "25da1ab4ffb0c5a247024d8de8e5952830e21821d52582b43cbf646e694c3aab",
            "high-auto": "1519fe51953e1fa6a89aa6c084ebea15e3850899e12c46b46f7308fbe11d1075",
            "auto": "cc121e524733ff2905ee5772861358ff62eb8d859aa5d1c700187d23d800e968",
            "wide": "060c84bef7a99f131ab643a3875cf66deee1b20fd98f0684cdd58c8a3f4cd0e7",
            "tall": "db16820db0f318f3009351a5fc3828de01e39014782088658d20865735265566",
            "png": "125dc08584af17feffe59baab9bd0097626191fb794a0b8ea8f5164c116525dc",
            "two": "435fac0f35775713fc79bc87e411dbc47d2e502b114a050cc0179625254ec87e",
            "gpt1": "8019cec2a4c2c5ff2aa75b8330a6e41d0dd5f3bfad46288cd953dd5581f5d868",
            "url": "49be947b95f85d9ce9df64a0d733935f3c895f088e3804b8c661e5a6ce942f75",
            "mixed-refs": "3a57ed84e5225f23d30dd4aacca831d172df879ed47309e6a3fa0e1b9c05a220",
            "datauri": "4118a2af382628721d8e98b9a7bb114980eed15ba9aee7be22a8c3a165ff6e89",
            "unicode": "c78fb425542882de4f4bcc5b4018fdc17c022dafa7564068a631ed1ec2568840",
            "width-only": "c5761d01b137a3bf55f093dbff07f83d1dae72ffa42d3bf941950fb48b334ae7",
        },
    ),
    "model per row": (
        "",
        "id,prompt,model,quality\n"
        "a,a red chair,openai:1@2,\n"
        "b,a red chair,openai:1@2,low\n"
        "c,a red chair,openai:1@1,high\n",
        {
            "a": "2632c94e84af229fd69a56bc3bc59111e263e54d93084757d1b0911b1fa1761d",
            "b": "1f37a64ab5ed7763aa37ba5d361d357ca642800b0a97b2f5d98709b17cdbb95d",
            "c": "26313e46c04a4ac2319e6ce154ba6cc9bce5ccec1abac45e2bff0cac8b3eb97a",
        },
    ),
    "settings in [defaults]": (
        '[defaults]\nmodel = "openai:1@2"\nwidth = 1536\nheight = 1024\nquality = "high"\n'
        'background = "transparent"\noutput_format = "PNG"\nnumber_results = 2\n',
        "id,prompt,model,quality,width,height\n"
        "a,a red chair,,,,\n"
        "b,a red chair,,low,1024,1024\n"
        "c,a red chair,openai:1@1,,,\n",
        {
            "a": "b6ed0a80f7f9cde997609fc4325e17c8108b3dd7c55f95625c299a9309c6e3b4",
            "b": "343979b08162f12f3e8b71f00af340fbc471c4112fa79f804e49eb92f4a82507",
            "c": "bbb35c40898288c385605b3e3c0bf01972cda8a55ff01e7faed9acd01a7e0dbc",
        },
    ),
}


class TestUpgrade:
    @pytest.mark.parametrize("case", list(UPGRADE_CASES))
    def test_a_0_1_job_keeps_every_fingerprint(self, tmp_path: Path, case: str) -> None:
        """Rows whose request did not change get exactly the fingerprints 0.1 gave them, so a
        catalog finished with 0.1 plans as done, not as new work."""
        spec, manifest, expected = UPGRADE_CASES[case]
        (tmp_path / "ref.png").write_bytes(TINY_PNG)
        batch = read_all(load(tmp_path, manifest, spec=spec))
        assert batch.rejects == []
        assert {row.id: row.fingerprint for row in batch.rows} == expected

    def test_the_0_1_fixture_job_keeps_every_fingerprint_in_its_state(self, tmp_path: Path) -> None:
        """Every accepted row of the job 0.1 ran (tests/data/v01_job) has the fingerprint its ledger
        recorded; its rejects are the same rows, for the same rules."""
        expected = json.loads((V01_JOB / "expected.json").read_text())
        batch = read_all(load_job_spec(V01_JOB / "job.toml"))
        assert {row.id: row.fingerprint for row in batch.rows} == {
            row["id"]: row["fingerprint"] for row in expected["rows"]
        }
        assert [(r.row_number, r.id) for r in batch.rejects] == [
            (r["row_number"], r["id"]) for r in expected["rejects"]
        ]
