"""What made an image, written into the image file the way image tools read it.

The text is AUTOMATIC1111's "infotext" (stable-diffusion-webui, ``create_infotext`` in
modules/processing.py), which A1111 and its forks, ComfyUI's A1111 readers, Civitai and image browsers
parse: the prompt, then ``Negative prompt: ...``, then one line of ``Key: value`` pairs, with A1111's own
key names where it has one::

    a lighthouse at dusk
    Negative prompt: fog
    Steps: 1, CFG scale: 2.0, Seed: 7, Size: 512x512, Model: stabilityai/sd-turbo, Model revision: 1a2b..., Version: sdturbo-serve 0.1.0

Where it goes, as A1111's ``save_image`` (modules/images.py) puts it: a PNG's ``parameters`` text chunk
(handler/png.py); for JPEG and WebP, EXIF's UserComment, UNICODE-prefixed UTF-16 (A1111 writes it with
piexif; here Pillow writes the EXIF block). The project and its version also go in the PNG keyword and
EXIF tag that name the writing program, ``Software``.

The prompt and negative prompt go in only when the endpoint's ``log_prompts`` is on (handler/settings.py):
prompts are user data, kept nowhere beyond the request's own reply unless the operator said they may be,
and an image file outlives the request (it is shared, stored, left in S3). Without them the text is the
settings line alone, which A1111's parser reads as an empty prompt.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from handler import __version__

if TYPE_CHECKING:
    from handler.schema import GenerationRequest

SOFTWARE = f"sdturbo-serve {__version__}"
# Beside a model's model_index.json: the model's name and the hub revision (or a hash) of its weights, written
# by the tools that make the folder (scripts/download_model.py, scripts/build_offline_model.py).
SOURCE_FILE = "source.json"
# A1111's short model hash: the first 10 hex digits of the weights' SHA-256.
SHORT_HASH = 10
_EXIF_IFD, _USER_COMMENT, _SOFTWARE = 0x8769, 0x9286, 0x0131
# EXIF 2.3, 4.6.5: UserComment starts with 8 bytes naming its character code; "UNICODE" is UCS-2/UTF-16 in
# the byte order of the EXIF block (Pillow writes big-endian, "MM").
_UNICODE_PREFIX = b"UNICODE\0"


@dataclass(frozen=True)
class ModelSource:
    """Which weights make the images: a name, and the hub commit they came from or a hash of them."""

    name: str
    revision: str | None = None  # the hub commit the weights were downloaded at
    weights_sha256: str | None = None  # of the UNet's weights file, where no hub revision is known

    @classmethod
    def read(cls, model_dir: Path) -> ModelSource:
        """The folder's ``SOURCE_FILE``; a folder without one (made by other tools) is named by its name."""
        try:
            data = json.loads((model_dir / SOURCE_FILE).read_text())
        except (OSError, ValueError):
            return cls(model_dir.name)
        return cls(str(data.get("name") or model_dir.name), data.get("revision"), data.get("weights_sha256"))

    def write(self, model_dir: Path) -> None:
        (model_dir / SOURCE_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


def infotext(request: GenerationRequest, seed: int, index: int, model: ModelSource, with_prompts: bool) -> str:
    """The A1111 text for image ``index`` of a request: what a user needs to make it again.

    Args:
        seed: the request's seed as run (drawn by the engine when the request had none).
        index: the image's place among the request's ``num_images``, all drawn from that one seed.
        with_prompts: include the prompt and negative prompt (the endpoint's ``log_prompts``).
    """
    params = {"Steps": request.num_inference_steps, "CFG scale": request.guidance_scale, "Seed": seed,
              "Size": f"{request.width}x{request.height}",
              "Model hash": model.weights_sha256[:SHORT_HASH] if model.weights_sha256 else None,
              "Model": model.name, "Model revision": model.revision,
              "Denoising strength": request.strength,
              "Batch size": request.num_images if request.num_images > 1 else None,
              "Batch pos": index if request.num_images > 1 else None,
              "Version": SOFTWARE}
    text = ", ".join(f"{key}: {_quote(value)}" for key, value in params.items() if value is not None)
    if with_prompts:
        negative = f"\nNegative prompt: {request.negative_prompt}" if request.negative_prompt else ""
        text = f"{request.prompt}{negative}\n{text}"
    return text.replace("\0", "")  # JSON strings may hold NUL; a PNG text chunk may not


def png_text(text: str) -> dict[str, str]:
    """The PNG text chunks (keyword -> value) that carry ``text``."""
    return {"parameters": text, "Software": SOFTWARE}


def exif(text: str) -> bytes:
    """An EXIF block (for Pillow's ``exif=``) that carries ``text`` in UserComment and the project in Software."""
    block = Image.Exif()
    block[_SOFTWARE] = SOFTWARE
    block.get_ifd(_EXIF_IFD)[_USER_COMMENT] = _UNICODE_PREFIX + text.encode("utf-16-be")
    data = block.tobytes()
    if data[6:8] != b"MM":  # the UTF-16 above is big-endian, as the block must be
        raise ValueError(f"expected a big-endian EXIF block from Pillow, got {data[6:8]!r}")
    return data


def _quote(value: object) -> str:
    """A value as A1111 writes one: JSON-quoted when it holds a comma, colon or newline (``quote``)."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(mark in text for mark in ",:\n") else text
