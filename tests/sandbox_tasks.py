"""The imageInference task the sandbox tests send: the shape of the shared Runware examples."""

from __future__ import annotations

import uuid
from typing import Any


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
