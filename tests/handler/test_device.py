from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from handler.device import DeviceError, cap_device_memory, cuda_unusable_reason, driver_release, select_device, select_dtype

YES, NO = (lambda: True), (lambda: False)


@pytest.mark.parametrize("preference, gpu_id, cuda, mps, expected", [
    ("auto", None, YES, YES, torch.device("cuda", 0)),
    ("auto", 3, YES, NO, torch.device("cuda", 3)),        # TorchServe's gpu_id spreads workers over GPUs
    ("auto", None, NO, YES, torch.device("mps")),
    ("auto", None, NO, NO, torch.device("cpu")),
    ("cpu", 1, YES, YES, torch.device("cpu")),            # SDTURBO_DEVICE=cpu wins over a GPU
    ("mps", None, YES, YES, torch.device("mps")),
    ("cuda", "2", YES, NO, torch.device("cuda", 2)),
])
def test_device_order_and_overrides(preference, gpu_id, cuda, mps, expected):
    assert select_device(preference, gpu_id, cuda_available=cuda, mps_available=mps) == expected


@pytest.mark.parametrize("preference", ["cuda", "mps"])
def test_requested_device_that_is_missing_fails_clearly(preference):
    with pytest.raises(DeviceError, match=preference):
        select_device(preference, cuda_available=NO, mps_available=NO)


def test_dtype_per_device():
    assert select_dtype(torch.device("cuda", 0)) == torch.float16
    assert select_dtype(torch.device("mps")) == torch.float16
    assert select_dtype(torch.device("cpu")) == torch.float32
    assert select_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16


REASON = "torch 9 is built for CUDA 12.8; NVIDIA driver 470.256.02 supports CUDA up to 11.4"


def test_required_cuda_that_is_missing_names_the_cause():
    with pytest.raises(DeviceError, match="required") as caught:
        select_device("cuda", cuda_available=NO, mps_available=YES, explain_cuda=lambda: REASON)
    assert REASON in str(caught.value)


def test_auto_logs_its_choice_and_why_cuda_was_passed_over(caplog):
    with caplog.at_level(logging.INFO, logger="handler.device"):
        select_device("auto", cuda_available=NO, mps_available=NO, explain_cuda=lambda: REASON)
    assert [r.getMessage() for r in caplog.records] == [f"device auto: using cpu (CUDA not usable: {REASON})"]


@pytest.mark.parametrize("line, release", [
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.54.03  Tue Jun  6 22:20:39 UTC 2023", "535.54.03"),
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.144.03  Release Build  "
     "(dvs-builder@U16-I3-B03-4-3)  Mon Dec 30 17:10:10 UTC 2024", "550.144.03"),
])
def test_driver_release_is_read_from_the_kernel_module(tmp_path, line, release):
    version_file = tmp_path / "version"
    version_file.write_text(line + "\nGCC version:  gcc version 10.2.1\n")
    assert driver_release(version_file) == release


def test_reason_on_a_machine_without_cuda_names_torch_build_and_driver(tmp_path):
    reason = cuda_unusable_reason(tmp_path / "absent", "libcuda-absent.so.1", torch_error=lambda: "no driver")
    build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
    assert build in reason and "no NVIDIA driver is visible" in reason and "torch says: no driver" in reason


def test_reason_names_an_old_driver(tmp_path):
    version_file = tmp_path / "version"
    version_file.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.256.02  "
                            "Thu May  2 14:37:44 UTC 2024\n")
    reason = cuda_unusable_reason(version_file, "libcuda-absent.so.1", torch_error=lambda: None)
    assert "NVIDIA driver 470.256.02" in reason


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA works here, so torch has no error to report")
def test_torch_error_is_what_torch_says_here():
    # This machine's torch (a CPU build, or no GPU): torch's own words reach the reason.
    assert cuda_unusable_reason().count("torch says: ") == 1


def test_the_ceiling_becomes_torchs_per_process_fraction(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=16 * 2**30))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d: calls.append((f, d)))
    cuda = torch.device("cuda", 0)
    assert cap_device_memory(cuda, 7.5) == pytest.approx(7.5 / 16)
    assert calls == [(pytest.approx(7.5 / 16), cuda)]
    assert cap_device_memory(cuda, 0) is None and cap_device_memory(torch.device("cpu"), 7.5) is None
    assert cap_device_memory(cuda, 64) == 1.0  # a ceiling above the card is the card
    assert len(calls) == 2
