"""Validate an ``imageInference`` task against its model profile, as the real API does.

    task = validate_inference(raw_task, known_image=store.has_image)   # InferenceTask, or WireError (400)

The same ``pipeline.profiles`` the client plans with decide the sizes, enums, limits and price, so a
request the sandbox accepts is one the real API accepts, at the same cost.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pipeline.profiles import ModelProfile, load_model_profile
from pipeline.sandbox.wire import invalid_parameter

__all__ = ["OUTPUT_TYPES", "InferenceTask", "check_task_uuid", "validate_inference"]

OUTPUT_TYPES = ("URL", "base64Data", "dataURI")
DELIVERY_METHODS = ("sync", "async")
_KNOWN = frozenset(
    {
        "taskType",
        "taskUUID",
        "model",
        "positivePrompt",
        "width",
        "height",
        "numberResults",
        "outputType",
        "outputFormat",
        "outputQuality",
        "includeCost",
        "deliveryMethod",
        "providerSettings",
        "inputs",
        "referenceImages",
        "webhookURL",
        "ttl",
        "uploadEndpoint",
        "checkNSFW",
        "safety",
    }
)
_OPENAI_SETTINGS = frozenset({"quality", "background", "moderation"})
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")


@dataclass(frozen=True, slots=True)
class InferenceTask:
    """A valid ``imageInference`` task, normalised (defaults applied)."""

    task_uuid: str
    model: str
    prompt: str
    width: int
    height: int
    number_results: int
    output_type: str
    output_format: str
    output_quality: int
    include_cost: bool
    delivery: str
    quality: str
    background: str
    references: tuple[str, ...]
    price_usd: Decimal

    def prompt_key(self) -> tuple[object, ...]:
        """What makes two charges "the same prompt and parameters"."""
        return (
            self.model,
            self.prompt,
            self.width,
            self.height,
            self.quality,
            self.background,
            self.output_format,
            self.number_results,
            hashlib.sha256("\n".join(self.references).encode()).hexdigest() if self.references else "",
        )


def check_task_uuid(task: Mapping[str, Any]) -> str:
    """The task's ``taskUUID``, which must be a UUID string."""
    value = task.get("taskUUID")
    if not isinstance(value, str):
        raise invalid_parameter("taskUUID", "taskUUID is required and must be a UUID string.")
    try:
        uuid.UUID(value)
    except ValueError:
        raise invalid_parameter("taskUUID", f"taskUUID {value!r} is not a valid UUID.") from None
    return value


def _int(task: Mapping[str, Any], key: str, default: int | None, low: int, high: int) -> int:
    value = task.get(key, default)
    if value is None:
        raise invalid_parameter(key, f"{key} is required.")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid_parameter(key, f"Invalid value for {key}: {value!r}; an integer {low}..{high}.")
    return value


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise invalid_parameter(key, f"Invalid value for {key}: {value!r}; one of {', '.join(choices)}.")
    return str(value)


def _profile(task: Mapping[str, Any]) -> ModelProfile:
    model = task.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_parameter("model", "model is required (an AIR id such as openai:1@2).")
    try:
        return load_model_profile(model)
    except KeyError:
        raise invalid_parameter("model", f"Unknown model {model!r}.", code="invalidModel") from None


def _reject_unknown(task: Mapping[str, Any], profile: ModelProfile) -> None:
    for key in task:
        if key in profile.unsupported_parameters:
            raise invalid_parameter(
                key, f"{key} is not supported by {profile.id} ({profile.name}).", code="unsupportedParameter"
            )
        if key not in _KNOWN:
            raise invalid_parameter(key, f"Unknown parameter {key!r}.", code="unknownParameter")


def _prompt(task: Mapping[str, Any], profile: ModelProfile) -> str:
    prompt = task.get("positivePrompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid_parameter(
            "positivePrompt", "positivePrompt is required and must be a non-empty string."
        )
    if len(prompt) > profile.max_prompt_chars:
        raise invalid_parameter(
            "positivePrompt",
            f"positivePrompt has {len(prompt)} characters; {profile.id} takes at most "
            f"{profile.max_prompt_chars}.",
        )
    return prompt


def _provider_settings(task: Mapping[str, Any], profile: ModelProfile) -> tuple[str, str]:
    settings = task.get("providerSettings", {})
    if not isinstance(settings, dict):
        raise invalid_parameter("providerSettings", "providerSettings must be an object.")
    for name in settings:
        if name != profile.provider_settings_key:
            raise invalid_parameter(
                f"providerSettings.{name}",
                f"providerSettings.{name} does not apply to {profile.id}.",
                code="unknownProviderSettingsProvider",
            )
    own = settings.get(profile.provider_settings_key, {})
    if not isinstance(own, dict):
        raise invalid_parameter(f"providerSettings.{profile.provider_settings_key}", "must be an object.")
    prefix = f"providerSettings.{profile.provider_settings_key}"
    for key in own:
        if key not in _OPENAI_SETTINGS:
            raise invalid_parameter(
                f"{prefix}.{key}", f"Unknown parameter {prefix}.{key}.", "unknownParameter"
            )
    quality = _choice(own.get("quality", "auto"), f"{prefix}.quality", profile.qualities)
    background = _choice(own.get("background", "auto"), f"{prefix}.background", profile.backgrounds)
    return quality, background


def _is_reference(value: str, known_image: Callable[[str], bool]) -> bool:
    if value.startswith(("https://", "http://")):
        return True
    if value.startswith("data:image/"):
        return ";base64," in value
    try:
        uuid.UUID(value)
    except ValueError:
        return len(value) >= 16 and bool(_BASE64.match(value[:4096]))
    return known_image(value)


def _references(
    task: Mapping[str, Any], profile: ModelProfile, known_image: Callable[[str], bool]
) -> tuple[str, ...]:
    inputs = task.get("inputs", {})
    if not isinstance(inputs, dict):
        raise invalid_parameter("inputs", "inputs must be an object.")
    refs = inputs.get("referenceImages", task.get("referenceImages", []))
    key = "inputs.referenceImages"
    if not isinstance(refs, list) or not all(isinstance(ref, str) for ref in refs):
        raise invalid_parameter(key, "referenceImages must be a list of strings.")
    if len(refs) > profile.max_reference_images:
        raise invalid_parameter(
            key, f"{len(refs)} reference images; {profile.id} takes at most {profile.max_reference_images}."
        )
    for index, ref in enumerate(refs):
        if not _is_reference(ref, known_image):
            raise invalid_parameter(
                key,
                f"referenceImages[{index}] is not a URL, a data URI, base64 data or a known image UUID.",
            )
    return tuple(refs)


def validate_inference(task: Mapping[str, Any], *, known_image: Callable[[str], bool]) -> InferenceTask:
    """The normalised task, or the ``WireError`` the real API would answer (400, naming the parameter)."""
    task_uuid = check_task_uuid(task)
    profile = _profile(task)
    _reject_unknown(task, profile)
    prompt = _prompt(task, profile)
    width = _int(task, "width", None, 1, 8192)
    height = _int(task, "height", None, 1, 8192)
    if not profile.allows_size(width, height):
        raise invalid_parameter(
            "width",
            f"Size {width}x{height} is not supported by {profile.id}: use one of {', '.join(profile.sizes)}.",
            code="invalidSize",
        )
    number = _int(task, "numberResults", 1, 1, profile.max_number_results)
    quality, background = _provider_settings(task, profile)
    if not isinstance(task.get("includeCost", True), bool):
        raise invalid_parameter("includeCost", "includeCost must be a boolean.")
    return InferenceTask(
        task_uuid=task_uuid,
        model=profile.id,
        prompt=prompt,
        width=width,
        height=height,
        number_results=number,
        output_type=_choice(task.get("outputType", "URL"), "outputType", OUTPUT_TYPES),
        output_format=_choice(task.get("outputFormat", "JPG"), "outputFormat", profile.output_formats),
        output_quality=_int(task, "outputQuality", 95, 20, 99),
        include_cost=bool(task.get("includeCost", True)),  # the real examples carry cost without asking
        delivery=_choice(task.get("deliveryMethod", "sync"), "deliveryMethod", DELIVERY_METHODS),
        quality=quality,
        background=background,
        references=_references(task, profile, known_image),
        price_usd=profile.price_usd(quality, width, height),
    )
