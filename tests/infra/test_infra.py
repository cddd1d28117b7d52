"""The Terraform stacks, offline: fmt, validate, `terraform test` with a mocked AWS provider, checkov."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.helpers import REPO
from tests.support.terraform_root import plugin_dir

pytestmark = pytest.mark.infra
INFRA = REPO / "infra"
ROOTS = [INFRA, INFRA / "bootstrap"]
CHECKOV = REPO / ".venv-tools" / "bin" / "checkov"


@pytest.fixture(scope="module")
def terraform(tmp_path_factory):
    binary = shutil.which("terraform")
    assert binary, "terraform 1.10+ is needed for the infra tests (https://developer.hashicorp.com/terraform/install)"
    config = tmp_path_factory.mktemp("tf") / "terraformrc"
    config.write_text("")
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": str(config), "NO_COLOR": "1"}

    def run(*args, cwd=INFRA, check=True):
        result = subprocess.run([binary, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        if check:
            assert result.returncode == 0, f"terraform {' '.join(args)} in {cwd}:\n{result.stdout}\n{result.stderr}"
        return result

    mirror = plugin_dir()
    for root in ROOTS:
        run("init", "-backend=false", "-input=false", *([f"-plugin-dir={mirror}"] if mirror else []), cwd=root)
    return run


def test_fmt(terraform):
    terraform("fmt", "-check", "-recursive", "-diff")


@pytest.mark.parametrize("root", ROOTS, ids=["main", "bootstrap"])
def test_validate(terraform, root):
    terraform("validate", "-no-color", cwd=root)


@pytest.mark.parametrize("root", ROOTS, ids=["main", "bootstrap"])
def test_terraform_test_passes(terraform, root):
    result = terraform("test", "-no-color", cwd=root, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = re.search(r"Success! (\d+) passed, 0 failed", result.stdout)
    assert summary and int(summary.group(1)) > 0, result.stdout[-1000:]


def test_checkov_finds_nothing(terraform):
    assert CHECKOV.exists(), "run `make tools`"
    result = subprocess.run([str(CHECKOV), "-d", str(INFRA), "--framework", "terraform", "--skip-download",
                             "--quiet", "--compact", "-o", "json"], capture_output=True, text=True, timeout=600)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [c for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    assert not failed, [(c["check_id"], c["resource"], c["file_path"]) for c in failed]
    assert sum(r["summary"]["passed"] for r in reports) > 100


def test_every_checkov_skip_gives_a_reason():
    for path in INFRA.rglob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                reason = line.split(":", 2)[-1] if line.count(":") >= 2 else ""
                assert len(reason.strip()) > 20, f"{path.name}: {line.strip()}"


def declared_resources() -> list[tuple[str, str]]:
    found = []
    for path in INFRA.rglob("*.tf"):
        if ".terraform" not in path.parts:
            found += re.findall(r'^resource\s+"([^"]+)"\s+"([^"]+)"', path.read_text(), re.MULTILINE)
    return found


def test_no_internet_or_nat_gateway_and_no_routes_out():
    types = {kind for kind, _ in declared_resources()}
    forbidden = {"aws_internet_gateway", "aws_nat_gateway", "aws_egress_only_internet_gateway", "aws_route",
                 "aws_eip", "aws_vpc_peering_connection"}
    assert not types & forbidden
    assert not re.search(r"^\s*route\s*{", (INFRA / "network.tf").read_text(), re.MULTILINE)


def test_every_variable_and_output_is_described_and_typed():
    for root in ROOTS:
        variables = (root / "variables.tf").read_text()
        blocks = re.split(r'^variable\s+"', variables, flags=re.MULTILINE)[1:]
        assert blocks
        for block in blocks:
            name = block.split('"', 1)[0]
            assert "description" in block and re.search(r"^\s+type\s+=", block, re.MULTILINE), name
        outputs = re.split(r'^output\s+"', (root / "outputs.tf").read_text(), flags=re.MULTILINE)[1:]
        assert outputs and all("description" in block for block in outputs)


def test_no_account_ids_or_real_bucket_names_in_the_repo():
    suspicious = re.compile(r"(?<![\d.])\d{12}(?![\d.])")
    for path in list(INFRA.rglob("*.tf")) + list(INFRA.rglob("*.hcl.example")):
        if ".terraform" in path.parts:
            continue
        assert not suspicious.search(path.read_text()), f"{path}: looks like an account id"


def test_readme_tables_are_generated_from_the_code():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "tf_docs.py"), "--check"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


def test_diagram_shows_what_the_code_declares():
    diagram = (INFRA / "README.md").read_text().split("```mermaid", 1)[1].split("```", 1)[0]
    types = {kind for kind, _ in declared_resources()}
    expected = {
        "aws_sagemaker_endpoint": "async endpoint", "aws_vpc_endpoint": "S3 gateway endpoint",
        "aws_ecr_repository": "ECR", "aws_sns_topic": "SNS", "aws_appautoscaling_policy": "Auto Scaling",
        "aws_iam_openid_connect_provider": "OIDC", "aws_kms_key": "KMS", "aws_s3_bucket": "S3 artifacts",
        "aws_cloudwatch_metric_alarm": "HasBacklogWithoutCapacity",
    }
    for kind, label in expected.items():
        assert kind in types, f"{kind} is no longer declared: update the diagram"
        assert label in diagram, f"the diagram lost {label!r}"


def test_readme_counts_the_alarms_the_stack_makes():
    # Each target tracking policy makes Application Auto Scaling create two alarms (high and low).
    stack = "".join(path.read_text() for path in INFRA.glob("*.tf"))
    own = len(re.findall(r'^resource\s+"aws_cloudwatch_metric_alarm"', stack, re.MULTILINE))
    target_tracking = len(re.findall(r'policy_type\s*=\s*"TargetTrackingScaling"', stack))
    readme = (INFRA / "README.md").read_text()
    assert f"{own + 2 * target_tracking} alarms" in readme
    assert not re.search(r"\b(?!{})\d+ alarms".format(own + 2 * target_tracking), readme)


def test_docs_say_scale_in_follows_target_tracking_not_the_cooldown():
    texts = [(INFRA / "README.md").read_text(), (INFRA / "variables.tf").read_text(),
             (INFRA / "autoscaling.tf").read_text()]
    assert all("15" in text and "minutes" in text for text in texts)
    assert not any(re.search(r"(lingers|back in to 0) .{0,40}cooldown|cooldown.{0,40}(lingers|to zero)", text)
                   for text in texts)


def test_every_profile_s_engine_settings_are_settings_the_engine_takes():
    """Each profile's handler settings (handler/profiles.yaml) reach the endpoint's container as SDTURBO_*
    variables, and the engine fails the model load on one that names no setting: a renamed field must fail
    here, not on the endpoint. Each must also change something the model's archive sets otherwise."""
    import yaml

    from handler.settings import load_settings

    profiles = yaml.safe_load((REPO / "handler" / "profiles.yaml").read_text())
    shipped = yaml.safe_load((REPO / "handler" / "model-config.yaml").read_text())["handler"] or {}
    assert profiles["sd-turbo"]["endpoint"]["handler"], "the default model's profile sizes it for the T4"
    for name, profile in profiles.items():
        archived = {**shipped, **(profile["model_config"].get("handler") or {})}
        endpoint = {**(profile["model_config"].get("handler") or {}), **(profile["endpoint"].get("handler") or {})}
        settings = load_settings(shipped, {f"SDTURBO_{key.upper()}": str(value) for key, value in endpoint.items()})
        for key in profile["endpoint"].get("handler") or {}:
            assert getattr(settings, key) != getattr(load_settings(archived, {}), key), (name, key)


def test_the_gpu_memory_table_lists_the_families_gpu_stack_names():
    """infra/profiles.tf's GPU memory per family and gpu_stack.py's GPU per family are two tables of the same
    instance families (both from AWS's instance type pages): one cannot gain a family the other lacks."""
    from sdturbo_ops.gpu_stack import INSTANCE_FAMILY_GPUS

    block = re.search(r"gpu_memory_gib = \{(.*?)\n  \}", (INFRA / "profiles.tf").read_text(), re.DOTALL).group(1)
    memory = dict(re.findall(r"^\s*(\w+)\s*=\s*(\d+)", block, re.MULTILINE))
    assert set(memory) == set(INSTANCE_FAMILY_GPUS)
    by_gpu = {}
    for family, (gpu, _) in INSTANCE_FAMILY_GPUS.items():
        by_gpu.setdefault(gpu, set()).add(memory[family])
    # One GPU, one memory size, except the A100, which AWS offers with 40 GB (p4d) and 80 GB (p4de).
    assert {gpu for gpu, sizes in by_gpu.items() if len(sizes) > 1} <= {"A100"}


def test_the_plan_reads_no_ceiling_as_the_engine_does():
    """infra/profiles.tf treats a profile without max_gpu_memory_gib as a worker without a ceiling, which is
    what handler/settings.py's default (0) means; a default ceiling there would make the plan's check wrong."""
    from handler.settings import EngineSettings

    assert EngineSettings().max_gpu_memory_gib == 0
    assert 'lookup(local.handler_settings, "max_gpu_memory_gib", "0")' in (INFRA / "profiles.tf").read_text()
