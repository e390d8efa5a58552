"""The imageInference tasks the sandbox tests send: the shape of the shared Runware examples, and the
task the pipeline's own wire builder makes for any model of the catalog; and a window of them sent at
once (``most_in_flight``)."""

from __future__ import annotations

import uuid
from typing import Any

import anyio

from pipeline.config.profiles import load_model_profile, parse_size
from pipeline.rows import ImageRequest
from pipeline.runware.client import RunwareClient
from pipeline.runware.wire import inference_task
from pipeline.sandbox import SandboxHandle


def inference(**overrides: Any) -> dict[str, Any]:
    """A valid GPT Image 1 Mini task with a fresh taskUUID; ``overrides`` replace or add fields."""
    return {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "openai:1@2",
        "positivePrompt": "a red bicycle leaning on a blue wall",
        "width": 1024,
        "height": 1024,
        "numberResults": 1,
        "outputType": "URL",
        "outputFormat": "JPG",
        "includeCost": True,
        "providerSettings": {"openai": {"quality": "medium", "background": "opaque"}},
        **overrides,
    }


def default_request(model: str, **changes: Any) -> ImageRequest:
    """What a job row with nothing but a prompt asks of ``model``: its default size and every option
    that has a default (``changes`` replace fields; ``options`` are merged by name)."""
    profile = load_model_profile(model)
    defaults = {
        name: _text(spec.default) for name, spec in profile.options.items() if spec.default is not None
    }
    defaults.update(dict(changes.pop("options", ())))
    width, height = parse_size(profile.sizes.default) if profile.sizes.default else (None, None)
    fields: dict[str, Any] = {
        "model": model,
        "prompt": "a lighthouse on a cliff at dusk",
        "width": width,
        "height": height,
        "quality": defaults.pop("quality", ""),
        "background": defaults.pop("background", ""),
        "output_format": "JPG",
        "number_results": 1,
        "options": tuple(sorted(defaults.items())),
    }
    return ImageRequest(**{**fields, **changes})


def model_task(model: str, refs: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    """The task the pipeline's own wire builder sends for ``default_request(model, **changes)``."""
    request = default_request(model, **changes)
    return inference_task(request, str(uuid.uuid4()), refs, profile=load_model_profile(model)).wire()


def _text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


async def most_in_flight(sandbox: SandboxHandle, client: RunwareClient, window: int, waves: int = 1) -> int:
    """Send ``waves`` windows of ``window`` tasks through ``client``, one window after the other; the most
    tasks the sandbox held at once (polled every 10 ms)."""
    most = 0

    async def watch() -> None:
        nonlocal most
        while True:
            most = max(most, sandbox.billing()["in_flight"])
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        for _ in range(waves):
            async with anyio.create_task_group() as senders:
                for _ in range(window):
                    senders.start_soon(client.infer, inference())
        tg.cancel_scope.cancel()
    return most
