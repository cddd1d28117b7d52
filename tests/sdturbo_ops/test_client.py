"""Asking a running server for images (sdturbo_ops/client.py, invoke.py's local mode): the request, the reply,
the files it becomes."""

from __future__ import annotations

import base64
import io
import json
import os

import pytest
from PIL import Image

from tests.support.helpers import decode_image, free_port, run_script
from tests.support.images import encode, picture


def png_reply(seed=7, size=(64, 48)) -> dict:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return {"image": base64.b64encode(buffer.getvalue()).decode(), "seed": seed, "width": size[0],
            "height": size[1], "format": "png"}


def one_clean_line(stderr: str) -> bool:
    return stderr.strip().count("\n") == 0 and stderr.startswith("error: ") and "Traceback" not in stderr


@pytest.mark.integration
def test_local_mode_posts_to_torchserve(torchserve, tmp_path):
    env = dict(os.environ)
    ok = run_script("invoke.py", "local", "a cat", "--seed", "3", "--url", torchserve.url,
                    "--out", str(tmp_path / "a.png"), env=env)
    assert ok.returncode == 0, ok.stderr
    assert decode_image(base64.b64encode((tmp_path / "a.png").read_bytes()).decode()).size == (512, 512)
    via_invocations = run_script("invoke.py", "local", "a cat", "--seed", "3", "--url", torchserve.url, "--path",
                                 "/invocations", "--out", str(tmp_path / "b.png"), env=env)
    assert via_invocations.returncode == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    bad = run_script("invoke.py", "local", "a cat", "--width", "100", "--url", torchserve.url, env=env)
    assert bad.returncode == 1 and "400" in bad.stderr and "width" in bad.stderr
    source = tmp_path / "start.webp"
    source.write_bytes(encode(picture(256, 320), "WEBP"))
    image_args = ["local", "a cat", "--seed", "3", "--image", str(source), "--strength", "0.5", "--url", torchserve.url]
    first = run_script("invoke.py", *image_args, "--out", str(tmp_path / "i1.png"), env=env)
    second = run_script("invoke.py", *image_args, "--out", str(tmp_path / "i2.png"), env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert Image.open(tmp_path / "i1.png").size == (256, 320)
    assert (tmp_path / "i1.png").read_bytes() == (tmp_path / "i2.png").read_bytes()  # same seed, image, params


@pytest.mark.integration
def test_local_mode_sends_a_negative_prompt_and_can_leave_the_settings_out(torchserve, tmp_path):
    common = ["local", "a cat", "--seed", "3", "--width", "256", "--height", "256", "--url", torchserve.url]
    steered = run_script("invoke.py", *common, "--guidance-scale", "2", "--negative-prompt", "a dog",
                         "--out", str(tmp_path / "steered.png"))
    plain = run_script("invoke.py", *common, "--guidance-scale", "2", "--no-metadata", "--out", str(tmp_path / "p.png"))
    assert steered.returncode == 0 and plain.returncode == 0, steered.stderr + plain.stderr
    assert Image.open(tmp_path / "steered.png").text["parameters"].startswith("Steps: 1, CFG scale: 2.0, Seed: 3")
    assert Image.open(tmp_path / "p.png").text == {}
    unguided = run_script("invoke.py", *common, "--negative-prompt", "a dog")
    assert unguided.returncode == 1 and "422" in unguided.stderr and "guidance_scale" in unguided.stderr


@pytest.mark.integration
def test_local_mode_can_ask_for_the_image_itself(torchserve, tmp_path):
    env = dict(os.environ)
    as_json = run_script("invoke.py", "local", "a cat", "--seed", "3", "--url", torchserve.url,
                         "--out", str(tmp_path / "json.png"), env=env)
    as_image = run_script("invoke.py", "local", "a cat", "--seed", "3", "--url", torchserve.url, "--accept", "image",
                          "--out", str(tmp_path / "image.png"), env=env)
    assert as_json.returncode == 0 and as_image.returncode == 0, as_image.stderr
    assert (tmp_path / "image.png").read_bytes() == (tmp_path / "json.png").read_bytes()
    assert "seed 3" in as_image.stdout  # from the reply's X-Seed header
    webp = run_script("invoke.py", "local", "a cat", "--url", torchserve.url, "--accept", "image",
                      "--out", str(tmp_path / "cat.webp"), env=env)
    assert webp.returncode == 0 and Image.open(tmp_path / "cat.webp").format == "WEBP", webp.stderr


def test_the_image_itself_for_several_images_is_refused_before_sending(tmp_path):
    result = run_script("invoke.py", "local", "a cat", "--accept", "image", "--num-images", "2",
                        "--url", f"http://127.0.0.1:{free_port()}", env=dict(os.environ))
    assert result.returncode == 2 and one_clean_line(result.stderr) and "--accept json" in result.stderr


def test_decode_saves_an_image_output_as_it_is(tmp_path):
    png = encode(picture(64, 48))
    (tmp_path / "output.out").write_bytes(png)
    result = run_script("invoke.py", "decode", str(tmp_path / "output.out"), "--out", str(tmp_path / "x.png"),
                        env=dict(os.environ))
    assert result.returncode == 0 and (tmp_path / "x.png").read_bytes() == png, result.stderr


def test_local_mode_explains_a_missing_server(tmp_path):
    result = run_script("invoke.py", "local", "a cat", "--url", f"http://127.0.0.1:{free_port()}", env=dict(os.environ))
    assert result.returncode == 1 and "make serve" in result.stderr


def test_decode_writes_images_from_a_saved_reply(tmp_path):
    (tmp_path / "reply.json").write_text(json.dumps(png_reply()))
    result = run_script("invoke.py", "decode", str(tmp_path / "reply.json"), "--out", str(tmp_path / "x.png"),
                        env=dict(os.environ))
    assert result.returncode == 0 and Image.open(tmp_path / "x.png").size == (64, 48)
    (tmp_path / "err.json").write_text(json.dumps({"code": 400, "message": "bad"}))
    assert run_script("invoke.py", "decode", str(tmp_path / "err.json"), env=dict(os.environ)).returncode == 1


# ------------------------------------------------------------------ file names and formats
def test_local_refuses_a_file_name_that_contradicts_the_format(tmp_path):
    """JPEG bytes in cat.png would open in some viewers and not in others: refused before any request."""
    result = run_script("invoke.py", "local", "a cat", "--format", "jpeg", "--out", str(tmp_path / "cat.png"),
                        "--url", f"http://127.0.0.1:{free_port()}", env=dict(os.environ))
    assert result.returncode == 2 and one_clean_line(result.stderr) and "cat.jpg" in result.stderr, result.stderr
    assert not (tmp_path / "cat.png").exists()


def test_local_refuses_a_file_ending_the_service_cannot_write(tmp_path):
    """`make predict OUT=x.gif` once wrote PNG bytes into x.gif without a word."""
    result = run_script("invoke.py", "local", "a cat", "--out", str(tmp_path / "x.gif"),
                        "--url", f"http://127.0.0.1:{free_port()}", env=dict(os.environ))
    assert result.returncode == 2 and one_clean_line(result.stderr), result.stderr
    assert ".gif" in result.stderr and ".png" in result.stderr and not (tmp_path / "x.gif").exists()


@pytest.mark.integration
def test_the_file_name_picks_the_format(torchserve, tmp_path):
    result = run_script("invoke.py", "local", "a cat", "--url", torchserve.url, "--out", str(tmp_path / "cat.jpg"),
                        env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "cat.jpg").format == "JPEG"


def test_decode_names_the_file_after_the_replys_format(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 90, 200)).save(buffer, format="JPEG")
    reply = {"image": base64.b64encode(buffer.getvalue()).decode(), "seed": 1, "format": "jpeg"}
    (tmp_path / "reply.json").write_text(json.dumps(reply))
    result = run_script("invoke.py", "decode", str(tmp_path / "reply.json"), "--out", str(tmp_path / "x.png"),
                        env=dict(os.environ))
    assert result.returncode == 0 and "x.jpg" in result.stdout, result.stdout + result.stderr
    assert Image.open(tmp_path / "x.jpg").format == "JPEG" and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("content", ['{"foo": 1}', "[1, 2]", "not json at all"])
def test_decode_of_something_that_is_not_a_reply_exits_4_with_one_clean_line(tmp_path, content):
    (tmp_path / "thing.json").write_text(content)
    result = run_script("invoke.py", "decode", str(tmp_path / "thing.json"), env=dict(os.environ))
    assert result.returncode == 4 and one_clean_line(result.stderr), result.stderr
    assert "error: error:" not in result.stderr
