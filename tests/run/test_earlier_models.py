"""[resume] keep_earlier_models: a row generated before on another model counts as done, asked of the
successes the store keeps (as a run asks it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.manifest.fingerprint import request_fingerprint
from pipeline.rows import ImageRequest, Row
from pipeline.run.earlier_models import generated_by_earlier_model, settings_of
from pipeline.state import STATE_NAME, Store
from pipeline.state.events import Event, FailedEvent, ImageResult, SubmittedEvent, SucceededEvent
from pipeline.state.ids import task_uuid_for


def catalog_row(model: str, prompt: str = "a red shoe", refs: tuple[str, ...] = (), **kw: str) -> Row:
    """A row as the manifest makes it: fingerprinted from its request (local references hashed)."""
    quality, background = kw.get("quality", "medium"), kw.get("background", "")
    request = ImageRequest(model, prompt, 1024, 1024, quality, background, "JPG", 1, refs)
    return Row(1, "sku-1", request_fingerprint(request), request)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / STATE_NAME, job="demo") as opened:
        yield opened


def generate(store: Store, row: Row, *, ok: bool = True) -> None:
    """Record what a run that sent ``row`` records: submitted, then succeeded (or failed for good)."""
    task = task_uuid_for(store.namespace, row.fingerprint, 1)
    sent = SubmittedEvent.for_row(row, task_uuid=task, attempt=1, run_id="r1", estimate_usd=0.011)
    image = ImageResult(index=0, image_uuid="u", image_url="http://x/u.jpg", cost_usd=0.011)
    answer: Event = (
        SucceededEvent(
            id=row.id,
            fingerprint=row.fingerprint,
            task_uuid=task,
            run_id="r1",
            images=(image,),
            cost_usd=0.011,
        )
        if ok
        else FailedEvent(
            id=row.id,
            fingerprint=row.fingerprint,
            task_uuid=task,
            run_id="r1",
            code="invalidPrompt",
            message="refused",
            retryable=False,
        )
    )
    store.record_many([sent, answer])


def earlier(store: Store, row: Row) -> bool:
    """What the run decides for ``row`` (``Engine._carried``)."""
    successes = [(fp, settings_of(sent.request)) for fp, sent in store.successes_of(row.id)]
    return generated_by_earlier_model(row, successes)


class TestEarlierModels:
    def test_a_row_switched_to_another_model_was_generated_by_the_earlier_one(self, store: Store) -> None:
        """Same id, prompt and references on a new model: done, though its fingerprint is new."""
        generate(store, catalog_row("openai:1@2", background="opaque"))
        new = catalog_row("openai:gpt-image@2")
        assert store.row_state(new.id, new.fingerprint) is None
        assert earlier(store, new)

    def test_an_edited_prompt_or_the_same_model_is_new_work(self, store: Store) -> None:
        """Another prompt is not the same image; a new quality on the same model is not an earlier model."""
        generate(store, catalog_row("openai:1@2"))
        assert not earlier(store, catalog_row("openai:gpt-image@2", prompt="a blue shoe"))
        assert not earlier(store, catalog_row("openai:1@2", quality="high"))

    def test_only_successes_count(self, store: Store) -> None:
        """A row that failed on the earlier model is still to do."""
        generate(store, catalog_row("openai:1@2"), ok=False)
        assert not earlier(store, catalog_row("openai:gpt-image@2"))

    def test_reference_images_must_be_the_same_content(self, store: Store, tmp_path: Path) -> None:
        """Same references: done. A reference file edited in place, or another reference: new work."""
        photo = tmp_path / "shoe.png"
        photo.write_bytes(b"\x89PNG first")
        refs = (str(photo), "https://cdn.example/box.png")
        generate(store, catalog_row("openai:1@2", refs=refs))
        assert earlier(store, catalog_row("openai:gpt-image@2", refs=refs))
        assert not earlier(store, catalog_row("openai:gpt-image@2", refs=refs[:1]))
        moved = photo.rename(tmp_path / "shoe-front.png")
        assert earlier(store, catalog_row("openai:gpt-image@2", refs=(str(moved), refs[1])))  # same content
        moved.rename(photo)
        photo.write_bytes(b"\x89PNG second")
        assert not earlier(store, catalog_row("openai:gpt-image@2", refs=refs))
