"""Image downloads over real HTTP on loopback: complete files or none, safe names, a size cap."""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from pipeline.run.downloads import (
    DownloadTooLargeError,
    PermanentDownloadError,
    TransientDownloadError,
    download_image,
    pending_downloads,
    render_filename,
)
from pipeline.state import STATE_NAME, Store
from pipeline.state.events import DownloadedEvent, ImageResult, SubmittedEvent, SucceededEvent

pytestmark = pytest.mark.anyio


def _jpeg(width: int, height: int) -> bytes:
    image = Image.effect_noise((width, height), 64).convert("RGB")  # noise: does not compress away
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


PHOTO = _jpeg(64, 48)
BIG = _jpeg(512, 512)


async def _photo(request: Request) -> Response:
    return Response(PHOTO, media_type="image/jpeg")


async def _big(request: Request) -> Response:
    return Response(BIG, media_type="image/jpeg")


async def _chunks(data: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for n, start in enumerate(range(0, len(data), 16 * 1024)):
        if fail_after is not None and n >= fail_after:
            raise RuntimeError("connection dropped mid-body")
        yield data[start : start + 16 * 1024]
        await asyncio.sleep(0)


async def _big_unsized(request: Request) -> Response:
    return StreamingResponse(_chunks(BIG), media_type="image/jpeg")  # chunked: no Content-Length


async def _dropped(request: Request) -> Response:
    return StreamingResponse(_chunks(BIG, fail_after=2), media_type="image/jpeg")


async def _missing(request: Request) -> Response:
    return Response("no such image", status_code=404)


async def _unavailable(request: Request) -> Response:
    return Response("try later", status_code=503)


async def _moved(request: Request) -> Response:
    return RedirectResponse("/img/photo.jpg", status_code=302)


async def _empty(request: Request) -> Response:
    return Response(b"", media_type="image/jpeg")


APP = Starlette(
    routes=[
        Route("/img/photo.jpg", _photo),
        Route("/img/big.jpg", _big),
        Route("/img/big-unsized.jpg", _big_unsized),
        Route("/img/dropped.jpg", _dropped),
        Route("/img/missing.jpg", _missing),
        Route("/img/unavailable.jpg", _unavailable),
        Route("/img/empty.jpg", _empty),
        Route("/img/moved.jpg", _moved),
    ]
)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A real HTTP server on a free loopback port, serving real JPEGs."""
    config = uvicorn.Config(APP, host="127.0.0.1", port=0, log_level="critical", lifespan="off", ws="none")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class TestDownload:
    async def test_real_image_lands_complete(
        self, server: str, client: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        """The file is the served image, byte for byte, with its sha256 and size; no temp file remains."""
        result = await download_image(
            client, f"{server}/img/photo.jpg", tmp_path / "images", "sku_0.jpg", 10**6
        )
        assert result.path == tmp_path / "images" / "sku_0.jpg"
        assert result.path.read_bytes() == PHOTO
        assert result.sha256 == hashlib.sha256(PHOTO).hexdigest() and result.bytes == len(PHOTO)
        with Image.open(result.path) as image:
            assert image.size == (64, 48)
        assert listing(tmp_path / "images") == ["sku_0.jpg"]

    async def test_redirect_is_followed(self, server: str, client: httpx.AsyncClient, tmp_path: Path) -> None:
        """An image URL that redirects (a CDN) still downloads."""
        result = await download_image(client, f"{server}/img/moved.jpg", tmp_path, "m.jpg", 10**6)
        assert result.path.read_bytes() == PHOTO

    async def test_download_again_replaces_the_file(
        self, server: str, client: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        """A retried download overwrites the old file in one step."""
        (tmp_path / "a.jpg").write_bytes(b"old")
        await download_image(client, f"{server}/img/photo.jpg", tmp_path, "a.jpg", 10**6)
        assert (tmp_path / "a.jpg").read_bytes() == PHOTO

    @pytest.mark.parametrize("path", ["/img/big.jpg", "/img/big-unsized.jpg"])
    async def test_size_cap(self, server: str, client: httpx.AsyncClient, tmp_path: Path, path: str) -> None:
        """An image over max_bytes is refused (with or without Content-Length) and nothing is left."""
        assert len(BIG) > 50_000
        with pytest.raises(DownloadTooLargeError, match="50000-byte limit"):
            await download_image(client, server + path, tmp_path, "big.jpg", 50_000)
        assert listing(tmp_path) == []

    async def test_not_found_is_permanent(
        self, server: str, client: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        """404: retrying will not help."""
        with pytest.raises(PermanentDownloadError, match="HTTP 404") as info:
            await download_image(client, f"{server}/img/missing.jpg", tmp_path, "x.jpg", 10**6)
        assert info.value.status == 404
        assert listing(tmp_path) == []

    @pytest.mark.parametrize(
        ("path", "reason"), [("/img/unavailable.jpg", "HTTP 503"), ("/img/empty.jpg", "empty")]
    )
    async def test_server_trouble_is_transient(
        self, server: str, client: httpx.AsyncClient, tmp_path: Path, path: str, reason: str
    ) -> None:
        """5xx and empty bodies may work later."""
        with pytest.raises(TransientDownloadError, match=reason):
            await download_image(client, server + path, tmp_path, "x.jpg", 10**6)
        assert listing(tmp_path) == []

    async def test_dropped_connection_leaves_no_partial_file(
        self, server: str, client: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        """A connection cut mid-image is transient and leaves nothing half-written."""
        with pytest.raises(TransientDownloadError):
            await download_image(client, f"{server}/img/dropped.jpg", tmp_path, "x.jpg", 10**7)
        assert listing(tmp_path) == []

    async def test_refused_connection_is_transient(self, client: httpx.AsyncClient, tmp_path: Path) -> None:
        """Nobody listening: transient, with the URL in the message."""
        with pytest.raises(TransientDownloadError, match=r"127\.0\.0\.1:9/"):
            await download_image(client, "http://127.0.0.1:9/x.jpg", tmp_path, "x.jpg", 10**6)

    async def test_bad_url_is_permanent(self, client: httpx.AsyncClient, tmp_path: Path) -> None:
        """A URL that can never work fails for good."""
        with pytest.raises(PermanentDownloadError, match="bad URL"):
            await download_image(client, "ftp://example.invalid/x.jpg", tmp_path, "x.jpg", 10**6)

    async def test_names_that_escape_are_refused(self, client: httpx.AsyncClient, tmp_path: Path) -> None:
        """download_image itself never writes outside dest_dir."""
        for name in ("../x.jpg", "a/b.jpg", "..", ""):
            with pytest.raises(PermanentDownloadError, match="plain file name"):
                await download_image(client, "http://127.0.0.1:9/x.jpg", tmp_path / "d", name, 10)
        assert listing(tmp_path) == []


HOSTILE_IDS = [
    "../../etc/passwd",
    "a/b",
    "a_b",
    "a\\b",
    "..",
    ".",
    "",
    "\0",
    "x\0y",
    ".hidden",
    "line\nbreak",
    "tab\there",
    "x" * 1000,
    "é" * 300,
    "日本語の商品",
    "emoji-🙂",
    "trailing. ",
    "\u202eevil",  # right-to-left override
]


class TestFilenames:
    def test_default_template(self) -> None:
        """A plain id renders as the template says."""
        assert render_filename(
            "{id}_{index}.{ext}", id="sku-1", index=2, ext="JPG", task_uuid="t", image_uuid="u"
        ) == ("sku-1_2.jpg")

    @pytest.mark.parametrize("row_id", HOSTILE_IDS)
    def test_hostile_ids_stay_inside_the_folder(self, tmp_path: Path, row_id: str) -> None:
        """Whatever the id, the file is a plain, visible name directly in the images folder."""
        name = render_filename(
            "{id}_{index}.{ext}", id=row_id, index=0, ext="jpg", task_uuid="t", image_uuid="u"
        )
        assert "/" not in name and "\\" not in name and "\0" not in name
        assert not name.startswith(".") and ".." not in name
        assert len(name.encode()) <= 200 and name.endswith(".jpg")
        assert all(c.isprintable() for c in name)
        path = tmp_path / name
        path.write_bytes(b"x")  # the filesystem accepts it
        assert path.resolve().parent == tmp_path.resolve()

    def test_distinct_ids_keep_distinct_names(self) -> None:
        """Sanitising never makes two rows share (and overwrite) one file."""
        names = {
            render_filename("{id}.{ext}", id=row_id, index=0, ext="jpg", task_uuid="t", image_uuid="u")
            for row_id in HOSTILE_IDS
        }
        assert len(names) == len(HOSTILE_IDS)

    def test_template_cannot_make_folders(self) -> None:
        """A separator in the template itself is flattened too."""
        name = render_filename(
            "../{id}/{index}.{ext}", id="a", index=0, ext="png", task_uuid="t", image_uuid="u"
        )
        assert "/" not in name and not name.startswith(".")

    def test_other_fields(self) -> None:
        """task_uuid and image_uuid can name the file."""
        name = render_filename(
            "{image_uuid}-{task_uuid}.{ext}", id="i", index=0, ext="webp", task_uuid="t", image_uuid="u"
        )
        assert name == "u-t.webp"


class TestPendingDownloads:
    def test_lists_succeeded_images_not_on_disk(self, tmp_path: Path) -> None:
        """After a run with failed downloads, the next run knows exactly which images to fetch."""
        images = (
            ImageResult(index=0, image_uuid="u0", image_url="http://h/u0.webp", cost_usd=0.01),
            ImageResult(index=1, image_uuid="u1", image_url="http://h/u1.webp", cost_usd=0.01),
            ImageResult(index=2, image_uuid="u2", image_url="http://h/u2.webp", cost_usd=0.01),
        )
        fp, task = "0f" * 16, "3f1d6c1e-8a4b-4c55-9a51-7e0b2f6d9a10"
        submitted = SubmittedEvent(
            id="a",
            fingerprint=fp,
            task_uuid=task,
            attempt=1,
            run_id="r",
            estimate_usd=0.03,
            request={"output_format": "WEBP"},
        )
        succeeded = SucceededEvent(
            id="a", fingerprint=fp, task_uuid=task, run_id="r", images=images, cost_usd=0.03
        )
        downloaded = DownloadedEvent(
            id="a",
            fingerprint=fp,
            task_uuid=task,
            index=1,
            image_uuid="u1",
            path="a.webp",
            sha256="",
            bytes=1,
        )
        with Store.open(tmp_path / STATE_NAME, job="j") as store:
            store.record_many([submitted, succeeded, downloaded])
            pending = pending_downloads(store)
        assert [(p.id, p.index, p.image_url, p.ext) for p in pending] == [
            ("a", 0, "http://h/u0.webp", "webp"),
            ("a", 2, "http://h/u2.webp", "webp"),
        ]


class TestWithTheSandbox:
    async def test_generated_image_downloads_complete(
        self, client: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        """An image generated by the sandbox downloads whole: the requested size and format, its sha256."""
        from pipeline.sandbox import SandboxSettings, running_sandbox

        task = {
            "taskType": "imageInference",
            "taskUUID": "3f1d6c1e-8a4b-4c55-9a51-7e0b2f6d9a10",
            "model": "openai:1@2",
            "positivePrompt": "a red rain boot on white",
            "width": 1024,
            "height": 1536,
            "numberResults": 1,
            "outputType": "URL",
            "outputFormat": "PNG",
            "includeCost": True,
            "providerSettings": {"openai": {"quality": "low", "background": "opaque"}},
        }
        async with running_sandbox(SandboxSettings()) as sb:
            answer = await client.post(sb.url, json=[task], headers={"Authorization": "Bearer test-key"})
            [item] = answer.json()["data"]
            name = render_filename(
                "{id}_{index}.{ext}",
                id="boot/red",
                index=0,
                ext="PNG",
                task_uuid=task["taskUUID"],
                image_uuid="u",
            )
            result = await download_image(
                client, item["imageURL"], tmp_path / "images", name, 50 * 1024 * 1024
            )
        assert result.path.parent == tmp_path / "images"
        assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
        with Image.open(result.path) as image:
            assert (image.format, image.size) == ("PNG", (1024, 1536))
