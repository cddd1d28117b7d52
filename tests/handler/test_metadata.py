"""The settings written into each image (handler/metadata.py): A1111's infotext, the model's name and revision
or hash, and the EXIF block of JPEG and WebP files, as PIL and exiftool read them."""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from handler import __version__
from handler.metadata import SOFTWARE, SOURCE_FILE, ModelSource, exif, infotext
from handler.parse import parse_request
from tests.support.images import b64, encode, picture

MODEL = ModelSource("stabilityai/sd-turbo", revision="b261bac6fd2cf515557d5d0707481eafa0485ec2")


def req(**fields):
    return parse_request({"prompt": "a lighthouse at dusk", **fields})


def test_the_text_is_a1111s_infotext_with_the_prompts_when_allowed():
    request = req(negative_prompt="fog", guidance_scale=2.0, width=640, height=384, num_inference_steps=2)
    assert infotext(request, 7, 0, MODEL, with_prompts=True) == (
        "a lighthouse at dusk\nNegative prompt: fog\n"
        "Steps: 2, CFG scale: 2.0, Seed: 7, Size: 640x384, Model: stabilityai/sd-turbo, "
        f"Model revision: b261bac6fd2cf515557d5d0707481eafa0485ec2, Version: sdturbo-serve {__version__}")


def test_without_the_prompts_the_text_is_the_settings_line_alone():
    request = req(negative_prompt="fog", guidance_scale=2.0)
    text = infotext(request, 7, 0, MODEL, with_prompts=False)
    assert "lighthouse" not in text and "fog" not in text and "\n" not in text
    assert text.startswith("Steps: 1, CFG scale: 2.0, Seed: 7, Size: 512x512, ")


def test_image_to_image_and_several_images_name_their_strength_and_place():
    request = req(image=b64(encode(picture(320, 256))), strength=0.75, num_images=3)
    text = infotext(request, 9, 2, ModelSource("tiny", weights_sha256="4c29be810178880770c3e77b"), False)
    assert "Size: 320x256, Model hash: 4c29be8101, Model: tiny, Denoising strength: 0.75, Batch size: 3, Batch pos: 2" in text


def test_values_with_commas_colons_or_newlines_are_quoted_and_nul_is_dropped():
    text = infotext(req(prompt="a cat\0, sitting"), 1, 0, ModelSource("my model: v2, fp16"), True)
    assert text.startswith("a cat, sitting\n") and 'Model: "my model: v2, fp16"' in text and "\0" not in text


def test_the_model_source_round_trips_and_a_folder_without_one_is_named_by_its_name(tmp_path):
    MODEL.write(tmp_path)
    assert ModelSource.read(tmp_path) == MODEL
    assert ModelSource.read(tmp_path / "sd-turbo") == ModelSource("sd-turbo")
    (tmp_path / SOURCE_FILE).write_text("{not json")
    assert ModelSource.read(tmp_path) == ModelSource(tmp_path.name)


def test_the_tiny_model_names_its_weights_by_their_hash(tiny_sd_dir):
    import hashlib

    source = ModelSource.read(tiny_sd_dir)
    weights = (tiny_sd_dir / "unet" / "diffusion_pytorch_model.fp16.safetensors").read_bytes()
    assert source.weights_sha256 == hashlib.sha256(weights).hexdigest() and source.revision is None
    assert source.name.startswith("sd-turbo-tiny")


def jpeg_with(text: str, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 90, 160)).save(buffer, format=fmt, exif=exif(text))
    return buffer.getvalue()


def test_pil_reads_the_exif_user_comment_back():
    text = "a cat ☃ in the snow\nSteps: 1, Seed: 7"
    for fmt in ("JPEG", "WEBP"):
        read = Image.open(io.BytesIO(jpeg_with(text, fmt))).getexif()
        assert read.get_ifd(0x8769)[0x9286] == b"UNICODE\0" + text.encode("utf-16-be") and read[0x0131] == SOFTWARE


@pytest.fixture(scope="module")
def exiftool():
    path = shutil.which("exiftool")
    if path is None:
        message = "the exiftool check needs exiftool (Debian's libimage-exiftool-perl); `make test` installs it as root"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must run this test, never skip it
        pytest.skip(message)
    return path


@pytest.mark.parametrize("fmt, suffix", [("JPEG", "jpg"), ("WEBP", "webp"), ("PNG", "png")])  # PNG: fast writer
def test_exiftool_reads_the_settings_of_every_format(exiftool, tmp_path, fmt, suffix):
    from handler.encode import ImageEncoder
    from handler.settings import EngineSettings

    text = "a cat ☃\nNegative prompt: dog\nSteps: 1, CFG scale: 2.0, Seed: 7"
    encoder = ImageEncoder(EngineSettings(encode_threads=1))
    path = tmp_path / f"image.{suffix}"
    pixels = np.asarray(picture(64, 48).convert("RGB"))
    path.write_bytes(encoder.encode_one(pixels, fmt.lower(), text=text))
    encoder.close()
    tag = "Parameters" if fmt == "PNG" else "UserComment"
    read = subprocess.run([exiftool, "-b", f"-{tag}", str(path)], capture_output=True, check=True).stdout
    assert read.decode() == text
    software = subprocess.run([exiftool, "-s3", "-Software", str(path)], capture_output=True, check=True, text=True)
    assert software.stdout.strip() == SOFTWARE
