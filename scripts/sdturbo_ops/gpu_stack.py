"""The table of SageMaker inference AMIs -> NVIDIA driver -> CUDA, and the check of the image's torch build
against every AMI the stack accepts (the CLI is scripts/gpu_stack.py).

Sources of the table (checked 2026; re-check when AWS adds an AMI):
- AWS, SageMaker developer guide, "Best practices to minimize interruptions during GPU driver upgrades"
  (https://docs.aws.amazon.com/sagemaker/latest/dg/inference-gpu-drivers.html): driver and CUDA per AMI,
  and that asynchronous inference on ml.g4dn.* without an AMI override runs driver 470 (CUDA 11.4).
- botocore's documentation of ProductionVariant.InferenceAmiVersion (data/sagemaker/2017-07-24/service-2.json):
  the same driver and CUDA per AMI; tests/test_gpu_stack.py compares this table with the installed botocore.
- hashicorp/aws provider 5.100 (the stack's pin) accepts al2-ami-sagemaker-inference-gpu-2, -gpu-2-1 and
  -gpu-3-1; it refuses al2023-ami-sagemaker-inference-gpu-4-1 (driver 580), which the API already knows.
- NVIDIA, CUDA Compatibility guide, "Minor Version Compatibility"
  (https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html): an application
  built with CUDA 12.x runs on any driver >= 525 (13.x: >= 580, 11.x: >= 450), with a limited feature set
  when the driver is older than the toolkit: no JIT of newer PTX. torch's wheels carry compiled kernels
  (SASS) for the T4's sm_75, and torch.compile (which would JIT) is off by default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Driver:
    branch: int  # NVIDIA driver branch, e.g. 550
    cuda: tuple[int, int]  # the newest CUDA version this driver runs natively


INFERENCE_AMIS = {
    "al2-ami-sagemaker-inference-gpu-2": Driver(535, (12, 2)),
    "al2-ami-sagemaker-inference-gpu-2-1": Driver(535, (12, 2)),
    "al2-ami-sagemaker-inference-gpu-3-1": Driver(550, (12, 4)),
    "al2023-ami-sagemaker-inference-gpu-4-1": Driver(580, (13, 0)),  # refused by AWS provider 5.x
}
# What an asynchronous endpoint on ml.g4dn.* gets when the variant names no inference AMI.
G4DN_WITHOUT_AMI = Driver(470, (11, 4))
# NVIDIA's minor-version compatibility: the oldest driver branch that runs any toolkit of a CUDA major.
MINIMUM_DRIVER_FOR_CUDA_MAJOR = {11: 450, 12: 525, 13: 580}


class StackError(ValueError):
    """A file does not say what the check needs."""


class Incompatible(StackError):
    """The release torch is no CUDA build, or its index and variant disagree."""


def cuda_of_variant(variant: str) -> tuple[int, int]:
    """``cu128`` -> (12, 8), ``cu130`` -> (13, 0), ``cu118`` -> (11, 8)."""
    match = re.fullmatch(r"cu(\d{2})(\d)", variant)
    if not match:
        raise Incompatible(f"TORCH_VARIANT={variant!r} is not a CUDA build (cuXYZ): the release image needs one")
    return int(match.group(1)), int(match.group(2))


def dockerfile_torch(text: str) -> tuple[str, tuple[int, int]]:
    """The release build's torch variant and its CUDA version, from the Dockerfile's ARG defaults."""
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S*)\s*$", text, re.MULTILINE))
    variant, index = args.get("TORCH_VARIANT"), args.get("TORCH_INDEX_URL")
    if variant is None or index is None:
        raise StackError("the Dockerfile declares no default TORCH_VARIANT and TORCH_INDEX_URL")
    cuda = cuda_of_variant(variant)
    if index.rstrip("/").rsplit("/", 1)[-1] != variant:
        raise Incompatible(f"TORCH_INDEX_URL={index} is not the wheel index of TORCH_VARIANT={variant}")
    return variant, cuda


def terraform_amis(text: str) -> tuple[str, list[str]]:
    """The default and the accepted values of ``inference_ami_version`` in variables.tf."""
    block = re.search(r'^variable "inference_ami_version" \{(.*?)^\}', text, re.MULTILINE | re.DOTALL)
    if not block:
        raise StackError('variables.tf declares no variable "inference_ami_version"')
    default = re.search(r'^\s*default\s*=\s*"([^"]+)"', block.group(1), re.MULTILINE)
    accepted = re.search(r"contains\(\[([^\]]*)\],\s*var\.inference_ami_version\)", block.group(1))
    if not default or not accepted:
        raise StackError("inference_ami_version needs a default and a contains([...]) validation")
    return default.group(1), re.findall(r'"([^"]+)"', accepted.group(1))


def runs_on(cuda: tuple[int, int], driver: Driver) -> str | None:
    """How a torch built for ``cuda`` runs on ``driver`` ("natively" or through minor-version compatibility),
    or None when it does not."""
    minimum = MINIMUM_DRIVER_FOR_CUDA_MAJOR.get(cuda[0])
    if minimum is None or driver.branch < minimum:
        return None
    if driver.cuda >= cuda:
        return "natively"
    return f"through CUDA minor-version compatibility (CUDA {cuda[0]}.x needs driver >= {minimum})"


def check(dockerfile: str, variables: str) -> tuple[bool, list[str]]:
    """Whether every AMI the stack accepts runs the image's torch; one line per AMI saying why."""
    variant, cuda = dockerfile_torch(dockerfile)
    default, accepted = terraform_amis(variables)
    lines, ok = [], True
    for ami in [default] + [name for name in accepted if name != default]:
        driver = INFERENCE_AMIS.get(ami)
        label = f"torch {variant} (CUDA {cuda[0]}.{cuda[1]}) on {ami}{' (default)' if ami == default else ''}"
        if driver is None:
            ok = False
            lines.append(f"FAIL {label}: not in sdturbo_ops/gpu_stack.py's table of inference AMIs")
            continue
        how = runs_on(cuda, driver)
        ok = ok and how is not None
        native = f"driver {driver.branch}, CUDA {driver.cuda[0]}.{driver.cuda[1]}"
        lines.append(f"ok   {label} [{native}]: runs {how}" if how else
                     f"FAIL {label} [{native}]: CUDA {cuda[0]}.x needs driver >= "
                     f"{MINIMUM_DRIVER_FOR_CUDA_MAJOR.get(cuda[0], '(unknown)')}")
    if default not in accepted:
        ok = False
        lines.append(f"FAIL the default {default} is not among the values the validation accepts")
    return ok, lines

