from __future__ import annotations

import pytest
import torch

from handler.device import DeviceError, select_device, select_dtype

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
