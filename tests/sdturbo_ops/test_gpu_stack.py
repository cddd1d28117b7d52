"""The image's torch CUDA build and the endpoint's inference AMI (its NVIDIA driver) must stay a pair."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import botocore
import pytest

from sdturbo_ops import gpu_stack
from tests.support.helpers import DOCKERFILE, REPO, run_script

VARIABLES = REPO / "infra" / "variables.tf"


def stack(tmp_path: Path, dockerfile: str | None = None, variables: str | None = None):
    """gpu_stack.py over the repository's files, or over edited copies of them."""
    paths = []
    for name, text, original in (("Dockerfile", dockerfile, DOCKERFILE), ("variables.tf", variables, VARIABLES)):
        path = tmp_path / name
        path.write_text(text if text is not None else original.read_text())
        paths.append(path)
    return run_script("gpu_stack.py", "--dockerfile", str(paths[0]), "--variables", str(paths[1]))


def test_the_repository_pairs_a_published_cuda_12_torch_with_a_driver_that_runs_it():
    result = run_script("gpu_stack.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "on al2-ami-sagemaker-inference-gpu-3-1 (default)" in result.stdout
    assert "is published, with kernels for ml.g4dn.2xlarge's T4" in result.stdout


def test_a_torch_build_pytorch_does_not_publish_fails(tmp_path):
    """torch 2.13 has no cu128 build (pytorch/pytorch#178665): the image with it could not be built."""
    drifted = re.sub(r"cu1\d\d", "cu128", DOCKERFILE.read_text())
    result = stack(tmp_path, dockerfile=drifted)
    assert result.returncode == 1, result.stdout
    assert "FAIL PyTorch publishes no cu128 build of torch 2.13" in result.stdout


def test_every_variant_is_checked_against_setup_cfgs_torch_pin(tmp_path):
    setup_cfg = (REPO / "setup.cfg").read_text()
    assert re.search(r"^\s*torch==2\.13\.\d+$", setup_cfg, re.MULTILINE), "update the published-builds table"
    unknown = tmp_path / "setup.cfg"
    unknown.write_text(re.sub(r"torch==2\.13\.\d+", "torch==2.99.0", setup_cfg))
    result = run_script("gpu_stack.py", "--setup-cfg", str(unknown))
    assert result.returncode == 1 and "torch 2.99 is not in" in result.stdout, result.stdout


def test_a_build_without_kernels_for_the_gpu_fails():
    """CUDA 13 builds carry no Volta (sm_70) kernels; an L4 (sm_89) runs the sm_86 ones."""
    assert "no kernels for the V100" in gpu_stack.check_published("cu130", "2.13", "ml.p3.2xlarge")[0]
    assert gpu_stack.check_published("cu126", "2.13", "ml.p3.2xlarge") == []
    assert gpu_stack.check_published("cu126", "2.13", "ml.g6.xlarge") == []
    assert "its GPU is not in" in gpu_stack.check_published("cu126", "2.13", "ml.q9.xlarge")[0]


def test_cuda_13_torch_with_the_550_driver_fails(tmp_path):
    drifted = re.sub(r"cu1\d\d", "cu130", DOCKERFILE.read_text())
    result = stack(tmp_path, dockerfile=drifted)
    assert result.returncode == 1 and "FAIL torch cu130" in result.stdout and "driver >= 580" in result.stdout


@pytest.mark.parametrize("edit, message", [
    # PyPI's Linux torch (a CUDA 13 build) instead of PyTorch's CUDA 12 index
    ({"TORCH_INDEX_URL": "https://pypi.org/simple", "TORCH_VARIANT": ""}, "not a CUDA build"),
    ({"TORCH_VARIANT": "cpu"}, "not a CUDA build"),
    ({"TORCH_INDEX_URL": "https://download.pytorch.org/whl/cu130"}, "is not the wheel index of"),
])
def test_release_torch_must_be_a_cuda_build_from_its_own_index(tmp_path, edit, message):
    text = DOCKERFILE.read_text()
    for name, value in edit.items():
        text, count = re.subn(rf"^ARG {name}=\S*$", f"ARG {name}={value}", text, flags=re.MULTILINE)
        assert count == 1, name
    result = stack(tmp_path, dockerfile=text)
    assert result.returncode == 1 and message in result.stderr


def test_an_ami_outside_the_table_fails(tmp_path):
    drifted = VARIABLES.read_text().replace('"al2-ami-sagemaker-inference-gpu-2"]',
                                            '"al2-ami-sagemaker-inference-gpu-2", "al2-ami-sagemaker-inference-gpu-9"]')
    result = stack(tmp_path, variables=drifted)
    assert result.returncode == 1 and "gpu-9: not in" in result.stdout


def test_without_an_ami_a_g4dn_endpoint_could_not_run_the_image():
    _, cuda = gpu_stack.dockerfile_torch(DOCKERFILE.read_text())
    assert gpu_stack.runs_on(cuda, gpu_stack.G4DN_WITHOUT_AMI) is None


def botocore_ami_documentation() -> dict[str, tuple[int, str]]:
    """AMI -> (driver branch, CUDA version) as botocore's SageMaker model documents them."""
    model = Path(botocore.__file__).parent / "data" / "sagemaker" / "2017-07-24" / "service-2.json.gz"
    shapes = json.loads(gzip.decompress(model.read_bytes()))["shapes"]
    text = shapes["ProductionVariant"]["members"]["InferenceAmiVersion"]["documentation"]
    found = {}
    for name, body in re.findall(r"<dt>([\w.-]+)</dt>\s*<dd>(.*?)</dd>", text, re.DOTALL):
        driver = re.search(r"NVIDIA driver version: (\d+)", body)
        cuda = re.search(r"CUDA version: ([\d.]+)", body)
        if driver and cuda:
            found[name] = (int(driver.group(1)), cuda.group(1))
    return found


def test_the_table_says_what_botocore_documents():
    documented = botocore_ami_documentation()
    assert documented, "botocore's InferenceAmiVersion documentation changed shape"
    for ami, driver in gpu_stack.INFERENCE_AMIS.items():
        assert documented.get(ami) == (driver.branch, f"{driver.cuda[0]}.{driver.cuda[1]}"), ami
    assert set(documented) <= set(gpu_stack.INFERENCE_AMIS), "a new GPU AMI: add it to sdturbo_ops/gpu_stack.py"


@pytest.mark.infra
def test_every_ami_the_stack_accepts_passes_the_aws_providers_own_validation(tmp_path):
    """The provider checks inference_ami_version against its own list at validate time, but only for a literal
    value, which the stack never has: so each accepted value is validated here as a literal."""
    from tests.support.terraform_root import plugin_dir

    terraform, mirror = shutil.which("terraform"), plugin_dir()
    assert terraform and mirror, "terraform and a local AWS provider mirror are needed (see tests/infra/test_infra.py)"
    _, accepted = gpu_stack.terraform_amis(VARIABLES.read_text())
    variants = "".join(
        f'resource "aws_sagemaker_endpoint_configuration" "ami{i}" {{\n  production_variants {{\n'
        f'    model_name = "m"\n    instance_type = "ml.g4dn.xlarge"\n    initial_instance_count = 1\n'
        f'    inference_ami_version = "{ami}"\n  }}\n}}\n' for i, ami in enumerate(accepted))
    (tmp_path / "main.tf").write_text(
        'terraform {\n  required_providers {\n    aws = { source = "hashicorp/aws" }\n  }\n}\n' + variants)
    (tmp_path / "terraformrc").write_text("")
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(tmp_path / "terraformrc"), "TF_IN_AUTOMATION": "1"}
    for command in (["init", "-backend=false", "-input=false", f"-plugin-dir={mirror}"], ["validate", "-no-color"]):
        result = subprocess.run([terraform, *command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
