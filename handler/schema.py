"""The request schema: each field, its bounds and default, and the defaults an image changes.

Every limit and default sits here with the reason for its value, in the field's description: the JSON
Schema that clients get, the README's request table and invoke.py's --help are all made from them
(scripts/sdturbo_ops/request_docs.py). A request with an ``image`` is image-to-image; the image itself is
decoded and checked by handler/image_input.py, whose limits (formats, pixels, sides, aspect ratio) sit
there with their reasons.

Validating is two steps: the fields as the caller sent them (bounds, types, the text-to-image defaults the
fields declare), then ``GenerationRequest.resolved``, the one place where an image changes the defaults.
handler/parse.py turns a body into a request, or into the 4xx that names the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from handler.image_input import MAX_INPUT_PIXELS, MIN_INPUT_SIDE, InitImage, SizeBounds, load_init_image

# The bounds of each field; the reason for each is in the field's description below.
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 1, 4, 1
DEFAULT_GUIDANCE, MAX_GUIDANCE = 0.0, 10.0
MIN_SIDE, MAX_SIDE, DEFAULT_SIDE, SIDE_MULTIPLE = 256, 1024, 512, 8
MAX_IMAGES = 4
MAX_PROMPT_CHARS = 1000
MAX_SEED = 2**32 - 1
# A whole request body is a few hundred bytes; anything this large is not a valid request.
MAX_BODY_BYTES = 64 * 1024
# Image-to-image: the model card's example, 2 steps at strength 0.5 (one denoising step runs: 2 x 0.5).
DEFAULT_IMAGE_STEPS, DEFAULT_STRENGTH = 2, 0.5
# The base64 of a 6 MiB file: a 12-megapixel phone JPEG (3-5 MB) fits. The model works at 1024x1024 at
# most, so a bigger file would only cost upload and decoding.
MAX_IMAGE_CHARS = 8 * 1024 * 1024
# A body with an image: the image's base64 plus the 64 KiB every other field fits in. Bodies without an
# image keep the 64 KiB limit.
MAX_IMAGE_BODY_BYTES = MAX_IMAGE_CHARS + MAX_BODY_BYTES
SIZE_BOUNDS = SizeBounds(MIN_SIDE, MAX_SIDE, SIDE_MULTIPLE)

# Classifier-free guidance runs (an unconditional pass beside the prompt's) only above this scale: diffusers'
# ``do_classifier_free_guidance`` is guidance_scale > 1. A negative prompt is that pass's text.
CFG_THRESHOLD = 1.0
# A validation error of this type is a request that parses but asks for something its other settings would
# silently ignore: 422, not 400 (handler/parse.py).
IGNORED_FIELD = "ignored_field"

OutputFormat = Literal["png", "jpeg", "webp"]
Side = Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_MULTIPLE)]


class GenerationRequest(BaseModel):
    """One request: text-to-image, or image-to-image when it carries an ``image``. Each field's description
    says why its bounds are what they are (``x-default``/``x-bounds`` say what the JSON Schema's own keywords
    cannot). The fields declare the text-to-image defaults; ``resolved`` applies an image's."""

    # strict: "512" is not 512 and true is not 1; allow_inf_nan: NaN/Infinity are rejected.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    prompt: Annotated[str, Field(
        min_length=1, max_length=MAX_PROMPT_CHARS,
        description="What to draw. CLIP reads 77 tokens (about 300 characters of English) and truncates the "
                    "rest, so 1000 characters is generous while bounding tokenizer work and log sizes.")]
    seed: Annotated[int | None, Field(
        ge=0, le=MAX_SEED,
        description="Noise seed; drawn at random when absent and returned in the reply. 32 bits: what "
                    "torch.Generator and most UIs accept.",
        json_schema_extra={"x-default": "random, returned"})] = None
    num_inference_steps: Annotated[int, Field(
        ge=MIN_STEPS, le=MAX_STEPS,
        description="Denoising steps. Turbo models are distilled for 1-4 steps; more do not improve them "
                    "and cost linearly. With an image, 2 by default (the model card's image-to-image example).",
        json_schema_extra={"x-default": f"`{DEFAULT_STEPS}`; `{DEFAULT_IMAGE_STEPS}` with an image"})] = DEFAULT_STEPS
    guidance_scale: Annotated[float, Field(
        ge=0.0, le=MAX_GUIDANCE,
        description="Classifier-free guidance. SD-turbo was trained without it (0.0, the model card's "
                    "value); above 1 doubles the UNet work, and 10 is far past anything useful.")] = DEFAULT_GUIDANCE
    negative_prompt: Annotated[str | None, Field(
        min_length=1, max_length=MAX_PROMPT_CHARS,
        description="What to steer away from: the text of classifier-free guidance's second UNet pass, so it "
                    "works only with guidance_scale above 1 (twice the UNet work); at 1 or below no such pass "
                    "runs and the request is refused with 422 rather than answered without it. Bounds as for "
                    "prompt.",
        json_schema_extra={"x-default": "none"})] = None
    width: Annotated[Side, Field(
        description="Image width in pixels: multiples of 8 (one latent pixel is 8x8 pixels); 256-1024 keeps "
                    "the latent grid within what the UNet handles and bounds decoder memory. With an image, "
                    "the image's width scaled into these bounds (keeping its aspect ratio with a given "
                    "height).",
        json_schema_extra={"x-default": f"`{DEFAULT_SIDE}`; the image's with an image"})] = DEFAULT_SIDE
    height: Annotated[Side, Field(
        description="Image height in pixels; bounds and image-to-image default as for width.",
        json_schema_extra={"x-default": f"`{DEFAULT_SIDE}`; the image's with an image"})] = DEFAULT_SIDE
    num_images: Annotated[int, Field(
        ge=1, le=MAX_IMAGES,
        description="Images for this prompt, each with its own noise; bounds one caller's share of a batch "
                    "and the reply size.")] = 1
    output_format: Annotated[OutputFormat, Field(
        description="Encoding of the returned images: base64 in the JSON reply, or the reply itself when the "
                    "request's Accept header asks for an image (then Accept picks the format unless this is "
                    "given).")] = "png"
    image: Annotated[str | None, Field(
        max_length=MAX_IMAGE_CHARS,
        description="Image-to-image: the starting image, a PNG, JPEG or WebP file as base64 (a "
                    "data:image/...;base64, prefix is allowed). Inline only: URLs are refused, the server "
                    f"never fetches. At most {MAX_INPUT_PIXELS / 1e6:.1f} megapixels (decompression bombs), at "
                    f"least {MIN_INPUT_SIDE} px a side, at most {SIZE_BOUNDS.max_aspect_ratio:g}:1 (the widest "
                    "output the size bounds allow). EXIF orientation is applied; transparency becomes white. "
                    "Absent: text-to-image.",
        json_schema_extra={"x-default": "none (text-to-image)",
                           "x-bounds": f"base64 of ≤ {MAX_IMAGE_CHARS * 3 // 4 // 2**20} MiB"})] = None
    strength: Annotated[float | None, Field(
        gt=0.0, le=1.0,
        description="Image-to-image: how much of the image is repainted (1.0 replaces it entirely). The model "
                    "runs int(num_inference_steps x strength) denoising steps, which must be at least 1. "
                    "Only with an image.",
        json_schema_extra={"x-default": f"`{DEFAULT_STRENGTH}` with an image"})] = None
    metadata: Annotated[bool, Field(
        description="Write the settings that made each image into its file (PNG text chunks, EXIF in JPEG and "
                    "WebP; the prompts only where the endpoint's log_prompts allows), as image tools expect; "
                    "false leaves them out. The endpoint's image_metadata setting can leave them out of "
                    "every image.",
        json_schema_extra={"x-default": "`true`"})] = True

    # The decoded image (handler/image_input.py), set by ``resolved``: pixels at the output size.
    _init_image: InitImage | None = PrivateAttr(None)

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("must contain non-whitespace text")
        return prompt

    @field_validator("negative_prompt")
    @classmethod
    def _negative_prompt_needs_guidance(cls, negative_prompt: str | None, info: ValidationInfo) -> str | None:
        guidance = info.data.get("guidance_scale")
        if negative_prompt is not None and guidance is not None and guidance <= CFG_THRESHOLD:
            raise PydanticCustomError(IGNORED_FIELD, (
                "has no effect at guidance_scale {guidance}: a negative prompt steers classifier-free guidance, "
                "which runs only above {threshold} (at twice the UNet work); raise guidance_scale (e.g. 2.0) "
                "or leave negative_prompt out"), {"guidance": guidance, "threshold": f"{CFG_THRESHOLD:g}"})
        return negative_prompt

    @field_validator("strength")
    @classmethod
    def _strength_needs_an_image(cls, strength: float | None, info: ValidationInfo) -> float | None:
        if strength is not None and "image" in info.data and info.data["image"] is None:
            raise ValueError("applies only to image-to-image: send an image with it")
        return strength

    def resolved(self) -> GenerationRequest:
        """The request with the values its mode decides, like vLLM's ``to_sampling_params``: the one place
        where image-to-image's defaults replace the fields' text-to-image ones. A text-to-image request is
        returned as it is. With an image, in this order:

        1. the image is decoded and fitted to the size bounds (a given width or height wins, the other
           keeps its aspect ratio): it gives ``width`` and ``height`` unless the caller sent them;
        2. ``num_inference_steps`` is ``DEFAULT_IMAGE_STEPS`` and ``strength`` ``DEFAULT_STRENGTH`` unless
           sent (a ``strength`` of null counts as not sent);
        3. the denoising steps that run, int(steps x strength), must be at least 1.

        Raises:
            ImageError: the image is unusable (parse_request answers it with the 4xx that names the field).
            ValidationError: step 3 fails; it names ``strength``, as the other field errors name theirs.
        """
        if self.image is None or self._init_image is not None:
            return self
        given = self.model_fields_set
        init = load_init_image(self.image, SIZE_BOUNDS, self.width if "width" in given else None,
                               self.height if "height" in given else None)
        steps = self.num_inference_steps if "num_inference_steps" in given else DEFAULT_IMAGE_STEPS
        strength = DEFAULT_STRENGTH if self.strength is None else self.strength
        # diffusers runs int(steps x strength) steps, and none at all is an error there.
        if int(steps * strength) < 1:
            raise _field_error("strength", strength, "num_inference_steps x strength must be at least 1 (the "
                               f"denoising steps that run); {steps} x {strength} is not: raise either (e.g. 2 "
                               "steps at 0.5)")
        width, height = init.size
        request = self.model_copy(update={"width": width, "height": height, "num_inference_steps": steps,
                                          "strength": strength})
        request._init_image = init
        return request

    @property
    def init_image(self) -> InitImage | None:
        """The decoded starting image at the output size; None for text-to-image.

        Raises:
            ValueError: an image request not yet ``resolved`` (parse_request resolves every request).
        """
        if self.image is not None and self._init_image is None:
            raise ValueError("an image-to-image request must be resolved() before its image is used")
        return self._init_image

    def shape_key(self) -> tuple:
        """Requests with equal keys can share one pipeline call: text-to-image and image-to-image never do
        (different pipelines), and image-to-image requests also need the same strength (it picks the
        timesteps). A group has negative prompts for all its requests or for none (diffusers takes one list
        or nothing, and SDXL-turbo's unconditional pass without one is zeros, force_zeros_for_empty_prompt,
        not an empty prompt's embedding)."""
        guidance = (self.guidance_scale, self.negative_prompt is not None)
        if self.image is None:
            return ("text", self.width, self.height, self.num_inference_steps, *guidance)
        return ("image", self.width, self.height, self.num_inference_steps, *guidance, self.strength)

    def pipeline_arguments(self) -> dict[str, Any]:
        """The diffusers pipeline's arguments that this request's group shares (``shape_key``): text-to-image
        draws its noise at the request's size; image-to-image takes its size from the starting image and
        repaints ``strength`` of it."""
        shared = {"num_inference_steps": self.num_inference_steps, "guidance_scale": self.guidance_scale}
        if self.image is None:
            return shared | {"height": self.height, "width": self.width}
        return shared | {"strength": self.strength}


def _field_error(field: str, value: Any, message: str) -> ValidationError:
    """A validation error of one field, worded as pydantic words a ValueError raised in a validator."""
    error = InitErrorDetails(type=PydanticCustomError("value_error", "Value error, {reason}", {"reason": message}),
                             loc=(field,), input=value)
    return ValidationError.from_exception_data(GenerationRequest.__name__, [error])


def request_json_schema() -> dict[str, Any]:
    """The request body's JSON Schema (draft 2020-12), bounds and reasons included, for clients."""
    return GenerationRequest.model_json_schema()
