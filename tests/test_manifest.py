"""Manifests: formats, column mapping, overrides, references, ids, fingerprints and row rejects."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from manifest_jobs import image, load, read_all

from pipeline.errors import ManifestError
from pipeline.fingerprint import fingerprint, request_fingerprint
from pipeline.manifest import Reject
from pipeline.rows import ImageRequest

UUID = "3f0c1a52-0b1d-4c7e-9a55-1f2e3d4c5b6a"
DATA_URI = "data:image/png;base64,iVBORw0KGgo="


class TestFormats:
    def test_csv_rows_get_the_job_defaults_and_keep_other_columns(self, tmp_path: Path) -> None:
        """Blank settings take [defaults]; sku/locale pass through untouched; row numbers are 1-based."""
        spec = load(tmp_path, "id,prompt,sku,locale\na,a red chair,S-1,en-US\nb,a blue lamp,S-2,fr-FR\n")
        batch = read_all(spec)
        assert batch.rejects == []
        first, second = batch.rows
        assert (first.row_number, first.id, second.row_number, second.id) == (1, "a", 2, "b")
        assert first.request == ImageRequest(
            "openai:1@2", "a red chair", 1024, 1024, "medium", "opaque", "JPG", 1
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
        from pipeline.manifest import read_manifest

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
        assert b.request == ImageRequest("openai:1@2", "p", 1024, 1024, "medium", "opaque", "JPG", 1)

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
    ("size", "id,prompt,width,height\nr,p,2048,512\n", "size 2048x512 is not allowed for openai:1@2"),
    (
        "size for the row's model",
        "id,prompt,model,width\nr,p,openai:1@1,640\n",
        "size 640x1024 is not allowed for openai:1@1",
    ),
    ("quality", "id,prompt,quality\nr,p,ultra\n", "unknown quality 'ultra'"),
    ("background", "id,prompt,background\nr,p,checkered\n", "unknown background 'checkered'"),
    ("format", "id,prompt,output_format\nr,p,GIF\n", "unknown output_format 'GIF'"),
    ("not a number", "id,prompt,width\nr,p,wide\n", "width 'wide' is not a whole number"),
    ("number of results", "id,prompt,number_results\nr,p,11\n", "number_results 11 is out of range 1..10"),
    (
        "too many references",
        f"id,prompt,reference_images\nr,p,{SEVENTEEN}\n",
        "too many reference images: 17 (at most 16",
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
        from pipeline.manifest import open_manifest

        spec = load(tmp_path, "id,prompt\na,p\nb,q\n")
        full = {r.id: r.fingerprint for r in read_all(spec).rows}
        with open_manifest(spec) as manifest:
            (frame,) = manifest.frames(fingerprint_ids=pl.Series(["b"]))
        assert dict(zip(frame["_id"], frame["_fp"], strict=True)) == {"a": None, "b": full["b"]}


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
    from pipeline.references import REMOTE_PATTERN, is_remote

    assert pl.Series([ref]).str.contains(REMOTE_PATTERN)[0] == is_remote(ref)
