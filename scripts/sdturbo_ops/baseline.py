"""The seed's design, kept as the benchmark's baseline: FastAPI + diffusers, one request at a time.

It generates PIL images, encodes PNG with Pillow's defaults and answers ``{"image": base64}``; a lock
serialises generation, as a single-process server with a global pipeline does. No validation, batching
or limits: not for production (scripts/baseline_server.py runs it).
"""

from __future__ import annotations

import base64
import io
import threading

from pydantic import BaseModel


class Prompt(BaseModel):
    prompt: str
    seed: int | None = None


def build_app(model_dir: str):
    import torch
    from diffusers import DiffusionPipeline
    from fastapi import FastAPI

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe = DiffusionPipeline.from_pretrained(model_dir, dtype=dtype, variant="fp16", safety_checker=None,
                                             requires_safety_checker=False, local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/generate")
    def generate(request: Prompt):
        generator = torch.Generator("cpu").manual_seed(request.seed or 0)
        with lock:
            image = pipe(request.prompt, num_inference_steps=1, guidance_scale=0.0, generator=generator).images[0]
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return {"image": base64.b64encode(buffer.getvalue()).decode()}

    return app
