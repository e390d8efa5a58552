"""Validate an ``imageInference`` task against its model profile, as the real API does.

    task = validate_inference(raw_task, known_image=store.has_image)   # InferenceTask, or WireError (400)
    task.image_cost(0)                                                 # what its first image is billed

The same ``pipeline.config.profiles`` the client plans with decide everything model-specific: the top-level
keys (Runware's platform keys plus the profile's ``keys``), what ``settings`` and ``providerSettings.<p>`` may
hold, each option's values (``OptionSpec.parse``), the sizes (``SizeSpec.problem``), references, prompt
and numberResults bounds, and the price (``ModelProfile.image_price``). So a request the sandbox accepts
is one the real API accepts, at the same cost. A key the model does not declare is ``unsupportedParameter``,
as the real API answers it.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from functools import cache
from typing import Any

from pipeline.config.profiles import ModelProfile, OptionSpec, load_model_profile, parse_size
from pipeline.rows import LEGACY_OPTIONS, ImageRequest
from pipeline.sandbox.wire import WireError, invalid_parameter, model_refused

__all__ = [
    "OUTPUT_TYPES",
    "PLATFORM_KEYS",
    "InferenceTask",
    "check_task_uuid",
    "metered_cost",
    "validate_inference",
]

OUTPUT_TYPES = ("URL", "base64Data", "dataURI")
DELIVERY_METHODS = ("sync", "async")
#: Keys every image model takes (runware-sdk 1.8 task_map), besides those its profile declares.
PLATFORM_KEYS = frozenset(
    {
        "taskType",
        "taskUUID",
        "model",
        "positivePrompt",
        "numberResults",
        "outputType",
        "outputFormat",
        "outputQuality",
        "includeCost",
        "deliveryMethod",
        "webhookURL",
        "ttl",
        "uploadEndpoint",
        "safety",
        "routing",
        "advancedFeatures",
    }
)
_CONTAINERS = ("settings", "providerSettings")
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")
_CENT_FRACTIONS = Decimal("0.00001")  # metered costs come with five decimals, as the real ones do
_FALLBACK_SIZE = "1024x1024"


@dataclass(frozen=True, slots=True)
class InferenceTask:
    """A valid ``imageInference`` task, normalised (defaults applied)."""

    task_uuid: str
    model: str
    prompt: str
    width: int  # the size rendered: as requested, or the resolution tier's (or the model's default)
    height: int
    number_results: int
    output_type: str
    output_format: str
    output_quality: int
    include_cost: bool
    delivery: str
    options: tuple[tuple[str, str], ...]  # every option the task sets: (profile name, canonical text)
    references: tuple[str, ...]
    price_usd: Decimal  # list price of one image, or the profile's estimate when ``metered``
    metered: bool = False  # token-billed: each image costs a deterministic amount below the estimate

    def option(self, name: str) -> str | None:
        return next((value for key, value in self.options if key == name), None)

    def image_cost(self, index: int) -> Decimal:
        """What the ``index``-th image is billed."""
        return metered_cost(self.price_usd, self.task_uuid, index) if self.metered else self.price_usd

    def image_costs(self) -> tuple[Decimal, ...]:
        """What each image is billed: what the task costs is known when it is accepted."""
        return tuple(self.image_cost(index) for index in range(self.number_results))

    def prompt_key(self) -> tuple[object, ...]:
        """What makes two charges "the same prompt and parameters" (model and prompt first)."""
        refs = hashlib.sha256("\n".join(self.references).encode()).hexdigest() if self.references else ""
        size = (self.width, self.height)
        return (self.model, self.prompt, size, self.options, self.output_format, self.number_results, refs)


def metered_cost(estimate: Decimal, task_uuid: str, index: int) -> Decimal:
    """A token-billed image's cost: 70-90% of the estimate, drawn from the taskUUID and image index
    (so the same task always costs the same), rounded down to five decimals: always below it."""
    digest = hashlib.sha256(f"{task_uuid}:{index}".encode()).digest()
    share = Decimal(int.from_bytes(digest[:4], "big")) / Decimal(2**32)
    return (estimate * (Decimal("0.70") + Decimal("0.2") * share)).quantize(_CENT_FRACTIONS, ROUND_DOWN)


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


# -- generic parameters ----------------------------------------------------------------------------------


def _int(task: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = task.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid_parameter(key, f"Invalid value for {key}: {value!r}; an integer {low}..{high}.")
    return value


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise invalid_parameter(key, f"Invalid value for {key}: {value!r}; one of {', '.join(choices)}.")
    return str(value)


def _unsupported(parameter: str, profile: ModelProfile) -> WireError:
    return invalid_parameter(
        parameter,
        f"Parameter {parameter} is not supported by {profile.id} ({profile.name}). "
        "Please remove this parameter from your request.",
        code="unsupportedParameter",
    )


def _profile(task: Mapping[str, Any]) -> ModelProfile:
    model = task.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_parameter("model", "model is required (an AIR id such as openai:1@2).")
    try:
        return load_model_profile(model)
    except KeyError:
        raise model_refused("invalidModel", model) from None


@cache
def _allowed_keys(model: str) -> frozenset[str]:
    return PLATFORM_KEYS | set(load_model_profile(model).keys)


def _reject_undeclared(task: Mapping[str, Any], profile: ModelProfile) -> None:
    allowed = _allowed_keys(profile.id)
    for key in task:
        if key not in allowed:
            raise _unsupported(key, profile)


def _prompt(task: Mapping[str, Any], profile: ModelProfile) -> str:
    prompt = task.get("positivePrompt", "" if profile.prompt.min_chars == 0 else None)
    bounds = f"{profile.prompt.min_chars}..{profile.prompt.max_chars} characters"
    if not isinstance(prompt, str) or (profile.prompt.min_chars > 0 and not prompt.strip()):
        raise invalid_parameter("positivePrompt", f"positivePrompt is required: text of {bounds}.")
    if not profile.prompt.min_chars <= len(prompt) <= profile.prompt.max_chars:
        raise invalid_parameter(
            "positivePrompt", f"positivePrompt has {len(prompt)} characters; {profile.id} takes {bounds}."
        )
    return prompt


# -- options ---------------------------------------------------------------------------------------------


def _option_text(value: object, option: OptionSpec, parameter: str) -> str:
    """A JSON value as option text, for ``OptionSpec.parse``; a value of the wrong JSON type is refused."""
    numeric = option.type in ("int", "float")
    if isinstance(value, bool) and option.type == "bool":
        return "true" if value else "false"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and numeric:
        return str(value)
    if isinstance(value, str) and option.type in ("enum", "str"):
        return value
    raise invalid_parameter(parameter, f"Invalid value for {parameter}: {value!r}; {option.allowed()}.")


def _parse_option(value: object, option: OptionSpec, parameter: str) -> str:
    try:
        return option.parse(_option_text(value, option, parameter))
    except ValueError as exc:
        raise invalid_parameter(parameter, f"Invalid value for {parameter}: {exc}.") from None


@cache
def _placements(model: str) -> dict[str, dict[str, tuple[str, OptionSpec]]]:
    """Where the model's options go: container ("top", "settings", ...) -> wire name -> (name, spec).
    Worked out once per model: every request reads it."""
    placed: dict[str, dict[str, tuple[str, OptionSpec]]] = {}
    for name, option in load_model_profile(model).options.items():
        placed.setdefault(option.at, {})[option.wire_name(name)] = (name, option)
    return placed


def _read_options(
    values: Mapping[str, Any], at: str, prefix: str, profile: ModelProfile, *, strict: bool
) -> list[tuple[str, str]]:
    """The options found in ``values`` (a container, or the task itself for ``top``), parsed; with
    ``strict``, a key that is not one of them is ``unsupportedParameter``."""
    placed = _placements(profile.id).get(at, {})
    found = []
    for key, value in values.items():
        parameter = f"{prefix}{key}"
        if key in placed:
            name, option = placed[key]
            found.append((name, _parse_option(value, option, parameter)))
        elif strict:
            raise _unsupported(parameter, profile)
    return found


def _object(value: object, parameter: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise invalid_parameter(parameter, f"{parameter} must be an object.")
    return value


def _provider_options(task: Mapping[str, Any], profile: ModelProfile) -> list[tuple[str, str]]:
    providers = _object(task.get("providerSettings", {}), "providerSettings")
    found = []
    for provider, settings in providers.items():
        at = f"providerSettings.{provider}"
        if at not in _placements(profile.id):
            raise invalid_parameter(
                at, f"{at} does not apply to {profile.id}.", code="unknownProviderSettingsProvider"
            )
        found += _read_options(_object(settings, at), at, f"{at}.", profile, strict=True)
    return found


def _options(task: Mapping[str, Any], profile: ModelProfile) -> tuple[tuple[str, str], ...]:
    """Every option the task sets, wherever the profile places it, as (name, canonical text)."""
    found = _read_options(task, "top", "", profile, strict=False)
    if "settings" in task:
        found += _read_options(
            _object(task["settings"], "settings"), "settings", "settings.", profile, strict=True
        )
    if "providerSettings" in task:
        found += _provider_options(task, profile)
    return tuple(sorted(found))


# -- sizes and references --------------------------------------------------------------------------------


def _side(task: Mapping[str, Any], key: str) -> int | None:
    value = task.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise invalid_parameter(key, f"Invalid value for {key}: {value!r}; an integer.")
    return value


def _missing(parameter: str, message: str) -> WireError:
    return invalid_parameter(parameter, message, code="missingParameter")


def _requested_size(
    task: Mapping[str, Any], profile: ModelProfile, resolution: str | None
) -> tuple[int, int] | None:
    """``width`` and ``height`` as the task gives them (None: neither), checked against the profile."""
    width, height = _side(task, "width"), _side(task, "height")
    if (width is None) != (height is None):
        absent = "height" if height is None else "width"
        raise _missing(absent, "width and height must be used together.")
    if width is None or height is None:
        if profile.sizes.required and resolution is None:
            raise _missing("width", f"width and height are required by {profile.id}.")
        return None
    if resolution is not None:
        raise invalid_parameter(
            "resolution", "Use resolution or width and height, not both.", code="incompatibleParameters"
        )
    problem = profile.sizes.problem(width, height)
    if problem is not None:
        raise invalid_parameter(
            "width", f"Size {width}x{height} is not supported by {profile.id}: {problem}.", "invalidSize"
        )
    return width, height


def _rendered_size(profile: ModelProfile, resolution: str | None) -> tuple[int, int]:
    """The size of an image whose task gives no width and height: the tier's first, else the default."""
    tier = profile.sizes.tiers.get(resolution or "", ())
    return parse_size(tier[0] if tier else profile.sizes.default or _FALLBACK_SIZE)


def _sizes(
    task: Mapping[str, Any], profile: ModelProfile, resolution: str | None, references: tuple[str, ...]
) -> tuple[tuple[int, int] | None, tuple[int, int]]:
    """(the size priced, None for "the resolution tier's"; the size rendered)."""
    size = _requested_size(task, profile, resolution)
    if resolution is not None and not references and profile.sizes.resolution_needs_references:
        raise _missing(profile.references.field, f"{profile.id} takes resolution with reference images only.")
    if size is not None:
        return size, size
    rendered = _rendered_size(profile, resolution)
    return (rendered if resolution is None else None), rendered  # no size at all: the default's price


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


def _reference_value(task: Mapping[str, Any], profile: ModelProfile) -> object:
    """What the task sends at the profile's reference field (None when absent); other ``inputs`` keys
    are unsupported."""
    field = profile.references.field
    head, _, rest = field.partition(".")
    if not rest:
        return task.get(head)
    container = _object(task.get(head, {}), head)
    for key in container:
        if key != rest:
            raise _unsupported(f"{head}.{key}", profile)
    return container.get(rest)


def _references(
    task: Mapping[str, Any], profile: ModelProfile, known_image: Callable[[str], bool]
) -> tuple[str, ...]:
    refs = _reference_value(task, profile)
    field, most = profile.references.field, profile.max_reference_images
    if refs is None:
        return ()
    if most == 0:
        raise _unsupported(field, profile)
    if not isinstance(refs, list) or not all(isinstance(ref, str) for ref in refs):
        raise invalid_parameter(field, "referenceImages must be a list of strings.")
    if len(refs) > most:
        raise invalid_parameter(field, f"{len(refs)} reference images; {profile.id} takes at most {most}.")
    for index, ref in enumerate(refs):
        if not _is_reference(ref, known_image):
            raise invalid_parameter(
                field,
                f"referenceImages[{index}] is not a URL, a data URI, base64 data or a known image UUID.",
            )
    return tuple(refs)


# -- price -----------------------------------------------------------------------------------------------


def _priced_options(profile: ModelProfile, options: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The options as the provider prices them: an unset option the price depends on takes the
    provider's own default, ``auto`` where the model allows it (as Runware's OpenAI models do), else
    the profile's."""
    priced = dict(options)
    by = profile.price.by
    if by is not None and by not in priced:
        option = profile.options[by]
        default = option.default if option.default is not None else (*option.values, "")[0]
        priced[by] = "auto" if "auto" in option.values else str(default)
    return priced


def _price(
    profile: ModelProfile,
    size: tuple[int, int] | None,
    options: tuple[tuple[str, str], ...],
    refs: tuple[str, ...],
) -> Decimal:
    """One image's price by the profile's one rule (``ModelProfile.image_price``)."""
    priced = _priced_options(profile, options)
    legacy = {name: priced.pop(name, "") for name in LEGACY_OPTIONS}  # quality, background: own fields
    request = ImageRequest(
        model=profile.id,
        prompt="",
        width=size[0] if size else None,
        height=size[1] if size else None,
        output_format="JPG",
        number_results=1,
        reference_images=refs,
        options=tuple(sorted(priced.items())),
        **legacy,
    )
    try:
        return profile.image_price(request)
    except KeyError as exc:  # a size the profile allows but cannot price: refuse rather than guess
        raise invalid_parameter("width", f"No price for this size: {exc.args[0]}.", "invalidSize") from None


# -- the task --------------------------------------------------------------------------------------------


def validate_inference(task: Mapping[str, Any], *, known_image: Callable[[str], bool]) -> InferenceTask:
    """The normalised task, or the ``WireError`` the real API would answer (400, naming the parameter)."""
    task_uuid = check_task_uuid(task)
    profile = _profile(task)
    _reject_undeclared(task, profile)
    prompt = _prompt(task, profile)
    options = _options(task, profile)
    resolution = dict(options).get("resolution")
    references = _references(task, profile, known_image)
    priced, (width, height) = _sizes(task, profile, resolution, references)
    if not isinstance(task.get("includeCost", True), bool):
        raise invalid_parameter("includeCost", "includeCost must be a boolean.")
    return InferenceTask(
        task_uuid=task_uuid,
        model=profile.id,
        prompt=prompt,
        width=width,
        height=height,
        number_results=_int(task, "numberResults", 1, 1, profile.max_number_results),
        output_type=_choice(task.get("outputType", "URL"), "outputType", OUTPUT_TYPES),
        output_format=_choice(task.get("outputFormat", "JPG"), "outputFormat", profile.output_formats),
        output_quality=_int(task, "outputQuality", 95, 20, 99),
        include_cost=bool(task.get("includeCost", True)),  # the real examples carry cost without asking
        delivery=_choice(task.get("deliveryMethod", "sync"), "deliveryMethod", DELIVERY_METHODS),
        options=options,
        references=references,
        price_usd=_price(profile, priced, options, references),
        metered=profile.price.kind == "token",
    )
