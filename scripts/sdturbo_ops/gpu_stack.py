"""The table of SageMaker inference AMIs -> NVIDIA driver -> CUDA, and the check of the image's torch build
against every AMI the stack accepts (the CLI is scripts/gpu_stack.py).

Sources of the table (checked 2026; re-check when AWS adds an AMI):
- AWS, SageMaker developer guide, "Best practices to minimize interruptions during GPU driver upgrades"
  (https://docs.aws.amazon.com/sagemaker/latest/dg/inference-gpu-drivers.html): driver and CUDA per AMI,
  and that asynchronous inference on ml.g4dn.* without an AMI override runs driver 470 (CUDA 11.4).
- botocore's documentation of ProductionVariant.InferenceAmiVersion (data/sagemaker/2017-07-24/service-2.json):
  the same driver and CUDA per AMI; tests/sdturbo_ops/test_gpu_stack.py compares this table with the installed botocore.
- hashicorp/aws provider 5.100 (the stack's pin) accepts al2-ami-sagemaker-inference-gpu-2, -gpu-2-1 and
  -gpu-3-1; it refuses al2023-ami-sagemaker-inference-gpu-4-1 (driver 580), which the API already knows.
- NVIDIA, CUDA Compatibility guide, "Minor Version Compatibility"
  (https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html): an application
  built with CUDA 12.x runs on any driver >= 525 (13.x: >= 580, 11.x: >= 450), with a limited feature set
  when the driver is older than the toolkit: no JIT of newer PTX. torch's wheels carry compiled kernels
  (SASS) for the T4's sm_75, and torch.compile (which would JIT) is off by default.

Sources of the published torch builds (``PUBLISHED_TORCH_BUILDS``):
- pytorch/pytorch#178665, "[RFC] CUDA support matrix for Release 2.12": CUDA 12.8 deprecated and removed
  from CI/CD; 12.6 kept as legacy, 13.0 stable (the PyPI build), 13.2 experimental.
- pytorch/pytorch#187075, "Add 2.13 to Release Compatibility Matrix": 2.13 ships stable CUDA 12.6 and 13.0,
  experimental 13.2 (no 12.8); pytorch/FBGEMM#5976 counted no cu128 wheels for 2.13.
- pytorch/pytorch#182849, RELEASE.md's "PyTorch CUDA Support Matrix" for 2.12 (2.13 and 2.14 the same,
  pytorch/pytorch#197555): Linux x86 architectures per build. 12.6.3: Maxwell 5.0, Pascal 6.0, Volta 7.0,
  Turing 7.5, Ampere 8.0/8.6, Hopper 9.0; 13.0.2 and 13.2.1: Turing 7.5, Ampere 8.0/8.6, Hopper 9.0,
  Blackwell 10.0/12.0.
- NVIDIA, CUDA C++ Programming Guide, "Binary Compatibility": a cubin built for compute capability X.y runs
  on X.z with z >= y, never on another major, so an L4 (8.9) runs the 8.6 kernels.

Sources of the GPU per instance family (``INSTANCE_FAMILY_GPUS``): AWS's "Amazon SageMaker AI pricing" and
EC2 accelerated-computing instance pages (g4dn: NVIDIA T4; g5: A10G; g6: L4; g6e: L40S; p3: V100; p4d/p4de:
A100; p5/p5e/p5en: H100/H200); compute capabilities from NVIDIA's "CUDA GPUs" page.
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


# The CUDA builds PyTorch publishes for a release (its download index, /whl/<variant>), each with the GPU
# architectures (compute capabilities) it carries compiled kernels for. Sources in the module docstring.
_CU126_ARCHS = ((5, 0), (6, 0), (7, 0), (7, 5), (8, 0), (8, 6), (9, 0))
_CU13_ARCHS = ((7, 5), (8, 0), (8, 6), (9, 0), (10, 0), (12, 0))
PUBLISHED_TORCH_BUILDS = {
    "2.12": {"cu126": _CU126_ARCHS, "cu130": _CU13_ARCHS, "cu132": _CU13_ARCHS},
    "2.13": {"cu126": _CU126_ARCHS, "cu130": _CU13_ARCHS, "cu132": _CU13_ARCHS},
}
# The GPU of each SageMaker GPU instance family: (name, compute capability).
INSTANCE_FAMILY_GPUS = {
    "g4dn": ("T4", (7, 5)), "g5": ("A10G", (8, 6)), "g6": ("L4", (8, 9)), "g6e": ("L40S", (8, 9)),
    "p3": ("V100", (7, 0)), "p4d": ("A100", (8, 0)), "p4de": ("A100", (8, 0)),
    "p5": ("H100", (9, 0)), "p5e": ("H200", (9, 0)), "p5en": ("H200", (9, 0)),
}


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


def pinned_torch(setup_cfg: str) -> str:
    """The torch release (``2.13``) of setup.cfg's exact pin ``torch==2.13.0``."""
    match = re.search(r"^\s*torch==(\d+)\.(\d+)\.\d+\s*$", setup_cfg, re.MULTILINE)
    if not match:
        raise StackError("setup.cfg pins no torch==X.Y.Z")
    return f"{match.group(1)}.{match.group(2)}"


def terraform_instance_type(text: str) -> str:
    """The default ``instance_type`` in variables.tf."""
    block = re.search(r'^variable "instance_type" \{(.*?)^\}', text, re.MULTILINE | re.DOTALL)
    default = block and re.search(r'^\s*default\s*=\s*"([^"]+)"', block.group(1), re.MULTILINE)
    if not default:
        raise StackError('variables.tf declares no default for variable "instance_type"')
    return default.group(1)


def has_kernels_for(archs: tuple[tuple[int, int], ...], gpu: tuple[int, int]) -> bool:
    """Whether a build with kernels for ``archs`` runs on a GPU of compute capability ``gpu`` (a cubin for
    X.y runs on X.z, z >= y)."""
    return any(major == gpu[0] and minor <= gpu[1] for major, minor in archs)


def instance_gpu(instance_type: str) -> tuple[str, tuple[int, int]] | None:
    """The (name, compute capability) of ``ml.<family>.<size>``'s GPU, or None for a family not in the table."""
    family = instance_type.split(".")[1] if instance_type.count(".") == 2 else instance_type
    return INSTANCE_FAMILY_GPUS.get(family)


def check_published(variant: str, torch_release: str, instance_type: str) -> list[str]:
    """Problems with the image's torch build: not published for the pinned release, or without kernels for
    the default instance type's GPU. Empty when there are none."""
    builds = PUBLISHED_TORCH_BUILDS.get(torch_release)
    if builds is None:
        return [f"torch {torch_release} is not in sdturbo_ops/gpu_stack.py's table of published builds: add its "
                "CUDA builds (PyTorch's release RFC names them) before pinning it"]
    if variant not in builds:
        return [f"PyTorch publishes no {variant} build of torch {torch_release} (it publishes "
                f"{', '.join(sorted(builds))}): the image cannot be built"]
    gpu = instance_gpu(instance_type)
    if gpu is None:
        return [f"{instance_type}: its GPU is not in sdturbo_ops/gpu_stack.py's table of instance families"]
    if not has_kernels_for(builds[variant], gpu[1]):
        return [f"torch {torch_release}+{variant} has no kernels for the {gpu[0]} (sm_{gpu[1][0]}{gpu[1][1]}) "
                f"of {instance_type}"]
    return []


def runs_on(cuda: tuple[int, int], driver: Driver) -> str | None:
    """How a torch built for ``cuda`` runs on ``driver`` ("natively" or through minor-version compatibility),
    or None when it does not."""
    minimum = MINIMUM_DRIVER_FOR_CUDA_MAJOR.get(cuda[0])
    if minimum is None or driver.branch < minimum:
        return None
    if driver.cuda >= cuda:
        return "natively"
    return f"through CUDA minor-version compatibility (CUDA {cuda[0]}.x needs driver >= {minimum})"


def check(dockerfile: str, variables: str, setup_cfg: str) -> tuple[bool, list[str]]:
    """Whether the image's torch build is published for setup.cfg's pin with kernels for the default
    instance type's GPU, and every AMI the stack accepts runs it; one line per check saying why."""
    variant, cuda = dockerfile_torch(dockerfile)
    release, instance_type = pinned_torch(setup_cfg), terraform_instance_type(variables)
    default, accepted = terraform_amis(variables)
    problems = check_published(variant, release, instance_type)
    ok = not problems
    lines = [f"FAIL {problem}" for problem in problems] or [
        f"ok   torch {release}+{variant} is published, with kernels for {instance_type}'s "
        f"{instance_gpu(instance_type)[0]}"]
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

