"""Pick the device and dtype the engine runs on; the only place that decides either."""

from __future__ import annotations

from collections.abc import Callable

import torch


class DeviceError(RuntimeError):
    """The requested device is not available on this machine."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def select_device(
    preference: str = "auto",
    gpu_id: int | None = None,
    *,
    cuda_available: Callable[[], bool] = torch.cuda.is_available,
    mps_available: Callable[[], bool] = _mps_available,
) -> torch.device:
    """Choose CUDA, then MPS, then CPU, unless ``preference`` names one.

    Args:
        preference: "auto", "cuda", "mps" or "cpu" (from settings / ``SDTURBO_DEVICE``).
        gpu_id: TorchServe's ``gpu_id`` for this worker, so workers spread over the GPUs.

    Raises:
        DeviceError: a specific device was requested but is not available.
    """
    if preference == "cpu":
        return torch.device("cpu")
    if preference in ("auto", "cuda") and cuda_available():
        return torch.device("cuda", int(gpu_id or 0))
    if preference == "cuda":
        raise DeviceError("SDTURBO_DEVICE=cuda but no CUDA device is available")
    if preference in ("auto", "mps") and mps_available():
        return torch.device("mps")
    if preference == "mps":
        raise DeviceError("SDTURBO_DEVICE=mps but the MPS backend is not available")
    return torch.device("cpu")


def select_dtype(device: torch.device, preference: str = "auto") -> torch.dtype:
    """fp16 on CUDA and MPS (half the memory, tensor cores; SD-turbo ships fp16 weights), fp32 on CPU
    (CPUs have no fast fp16 matmul and bf16 support varies by chip)."""
    if preference != "auto":
        return getattr(torch, preference)
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


def cap_device_memory(device: torch.device, max_gib: float) -> float | None:
    """Keep this process's CUDA allocations under ``max_gib`` (0: no cap); returns the fraction of the
    GPU that allows. Allocations past it raise out-of-memory, which the engine answers with 507."""
    if device.type != "cuda" or not max_gib:
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, max_gib * 2**30 / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def configure_matmul(device: torch.device) -> None:
    """TF32 for float32 matrix products on CUDA ("high"), set here for every caller: TorchServe's
    BaseHandler sets it when imported on an sm_80+ GPU, and compiled kernels are keyed on it, so the
    engine must run with the same value inside and outside TorchServe (handler/compiled.py)."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
