"""Pick the device and dtype the engine runs on; the only place that decides either.

``device: auto`` takes CUDA, then MPS, then the CPU, and logs which one it took and why. ``device: cuda``
(what the SageMaker stack sets on GPU instance types) never falls back: a GPU instance serving SD-turbo on
its CPU would be slow and billed as a GPU. When CUDA is not usable the error says why, with the driver's
and torch's CUDA versions where they can be read, so the endpoint's 503s name the cause.
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections.abc import Callable
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

# Where the NVIDIA kernel module reports its version; the NVIDIA container runtime mounts it into containers.
DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")


class DeviceError(RuntimeError):
    """The requested device is not available on this machine."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def driver_release(version_file: Path = DRIVER_VERSION_FILE) -> str | None:
    """The NVIDIA kernel driver's release (e.g. "550.144.03"), or None without a loaded driver."""
    try:
        text = version_file.read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else None


def driver_cuda_version(library: str = "libcuda.so.1") -> str | None:
    """The newest CUDA version the installed driver supports (cuDriverGetVersion), e.g. "12.4", or None."""
    try:
        libcuda = ctypes.CDLL(library)
        version = ctypes.c_int(0)
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def _torch_cuda_error() -> str | None:
    """What torch itself says when it initialises CUDA (e.g. "The NVIDIA driver on your system is too old")."""
    try:
        torch.cuda.init()
    except Exception as exc:  # torch raises RuntimeError or AssertionError depending on the build
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def cuda_unusable_reason(
    version_file: Path = DRIVER_VERSION_FILE,
    library: str = "libcuda.so.1",
    torch_error: Callable[[], str | None] = _torch_cuda_error,
) -> str:
    """Why CUDA cannot be used here: torch's CUDA build, the driver and what it supports, torch's own error."""
    built_for = torch.version.cuda
    parts = [f"torch {torch.__version__} is built for CUDA {built_for}" if built_for
             else f"torch {torch.__version__} is built without CUDA"]
    release, supported = driver_release(version_file), driver_cuda_version(library)
    if release is None and supported is None:
        parts.append("no NVIDIA driver is visible (no GPU, or the container was started without GPU access)")
    else:
        driver = f"NVIDIA driver {release or '(release unknown)'}"
        parts.append(f"{driver} supports CUDA up to {supported}" if supported else driver)
    error = torch_error()
    if error:
        parts.append(f"torch says: {error}")
    return "; ".join(parts)


def select_device(
    preference: str = "auto",
    gpu_id: int | None = None,
    *,
    cuda_available: Callable[[], bool] = torch.cuda.is_available,
    mps_available: Callable[[], bool] = _mps_available,
    explain_cuda: Callable[[], str] = cuda_unusable_reason,
) -> torch.device:
    """Choose CUDA, then MPS, then CPU, unless ``preference`` names one; log the choice once.

    Args:
        preference: "auto", "cuda", "mps" or "cpu" (from settings / ``SDTURBO_DEVICE``).
        gpu_id: TorchServe's ``gpu_id`` for this worker, so workers spread over the GPUs.

    Raises:
        DeviceError: a specific device was requested but is not available; for CUDA the message says why.
    """
    if preference == "cpu":
        return _chosen(torch.device("cpu"), preference)
    if preference in ("auto", "cuda") and cuda_available():
        return _chosen(torch.device("cuda", int(gpu_id or 0)), preference)
    if preference == "cuda":
        raise DeviceError(f"device cuda is required (SDTURBO_DEVICE or the handler's device setting) but CUDA "
                          f"is not usable: {explain_cuda()}")
    if preference in ("auto", "mps") and mps_available():
        return _chosen(torch.device("mps"), preference, explain_cuda if preference == "auto" else None)
    if preference == "mps":
        raise DeviceError("SDTURBO_DEVICE=mps but the MPS backend is not available")
    return _chosen(torch.device("cpu"), preference, explain_cuda)


def _chosen(device: torch.device, preference: str, explain_cuda: Callable[[], str] | None = None) -> torch.device:
    why = f" (CUDA not usable: {explain_cuda()})" if explain_cuda is not None else ""
    logger.info("device %s: using %s%s", preference, device, why)
    return device


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
