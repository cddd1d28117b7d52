"""The GitHub Actions workflows: they parse, zizmor and checkov find nothing, and the safety rules hold."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import REPO
from tests.support.workflows import OIDC_ACTION, WORKFLOWS, assumed_roles, load, steps, uses

pytestmark = pytest.mark.infra
CHECKOV = REPO / ".venv-tools" / "bin" / "checkov"


ALL = sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def test_the_three_workflows_exist():
    assert ALL == ["build-and-push.yml", "ci.yml", "deploy-infrastructure.yml"]


def test_zizmor_finds_nothing():
    zizmor = Path(sys.executable).parent / "zizmor"
    result = subprocess.run([str(zizmor), "--offline", "--config", str(REPO / ".github" / "zizmor.yml"),
                             "--format", "json", str(WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert json.loads(result.stdout) == []


def test_checkov_github_actions_checks_pass():
    assert CHECKOV.exists(), "run `make tools`"
    result = subprocess.run([str(CHECKOV), "-d", str(REPO / ".github"), "--framework", "github_actions",
                             "--skip-download", "--quiet", "--compact", "-o", "json"],
                            capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    assert not report["results"]["failed_checks"], [c["check_id"] for c in report["results"]["failed_checks"]]
    assert report["summary"]["passed"] > 0


@pytest.mark.parametrize("name", ALL)
def test_permissions_are_empty_or_read_only_at_the_top(name):
    permissions = load(name)["permissions"]
    assert permissions in ({}, {"contents": "read"}), permissions


@pytest.mark.parametrize("name", ALL)
def test_oidc_token_only_where_aws_is_assumed(name):
    for job_name, job in load(name)["jobs"].items():
        assumes_role = any(u.startswith(OIDC_ACTION) for u in uses(job))
        wants_token = job.get("permissions", {}).get("id-token") == "write"
        assert assumes_role == wants_token, f"{name}:{job_name}"


@pytest.mark.parametrize("name", ALL)
def test_actions_are_pinned_to_released_versions(name):
    for job in load(name)["jobs"].values():
        for ref in uses(job):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})", ref), ref


@pytest.mark.parametrize("name", ALL)
def test_checkout_does_not_persist_credentials(name):
    for job in load(name)["jobs"].values():
        for step in steps(job):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False


def test_ci_runs_the_readme_test_command_with_java_17():
    job = load("ci.yml")["jobs"]["test"]
    assert any("make test" in step.get("run", "") for step in steps(job))
    java = next(s for s in steps(job) if s.get("uses", "").startswith("actions/setup-java@"))
    assert java["with"]["java-version"] == "17"
    assert any(s.get("with", {}).get("cache") == "pip" for s in steps(job))
    assert {"pull_request", "push"} <= set(load("ci.yml")["on"])


def test_image_is_tagged_with_the_commit_sha_only():
    job = load("build-and-push.yml")["jobs"]["image"]
    build = next(s for s in steps(job) if s.get("uses", "").startswith("docker/build-push-action@"))
    tags = build["with"]["tags"].split(",")
    assert len(tags) == 1 and tags[0].endswith(":${{ github.sha }}")
    assert ":latest" not in (WORKFLOWS / "build-and-push.yml").read_text()
    assert "GITHUB_STEP_SUMMARY" in json.dumps(job)


def test_push_makes_a_single_platform_image_manifest_sagemaker_accepts():
    job = load("build-and-push.yml")["jobs"]["image"]
    build = next(s for s in steps(job) if s.get("uses", "").startswith("docker/build-push-action@"))
    # attestations turn the push into an OCI image index, which CreateModel refuses
    assert build["with"]["provenance"] is False and build["with"]["sbom"] is False
    assert build["with"]["platforms"] == "linux/amd64"
    assert "outputs" not in build["with"] and "attests" not in build["with"]


def test_apply_runs_only_the_reviewed_plan_behind_a_protected_environment():
    workflow = load("deploy-infrastructure.yml")
    jobs = workflow["jobs"]
    apply = jobs["apply"]
    assert apply["environment"] == "production"
    assert apply["needs"] == "plan" and "pull_request" in apply["if"]
    runs = " ".join(step.get("run", "") for step in steps(apply))
    assert re.search(r"terraform -chdir=infra apply \S*\s*tfplan", runs) and "-auto-approve" not in runs
    assert any(u.startswith("actions/download-artifact@") for u in uses(apply))
    plan_runs = " ".join(step.get("run", "") for step in steps(jobs["plan"]))
    assert "-out=tfplan" in plan_runs and "GITHUB_STEP_SUMMARY" in plan_runs
    assert any(u.startswith("actions/upload-artifact@") for u in uses(jobs["plan"]))
    check_runs = " ".join(step.get("run", "") for step in steps(jobs["check"]))
    assert "fmt -check" in check_runs and "validate" in check_runs
    # pull requests never reach a job that holds AWS credentials
    for name, job in jobs.items():
        if any(u.startswith(OIDC_ACTION) for u in uses(job)):
            assert "github.event_name != 'pull_request'" in job.get("if", ""), name


def test_no_secrets_or_account_ids_in_workflows():
    for path in WORKFLOWS.glob("*.yml"):
        text = path.read_text()
        assert "secrets." not in text, path.name  # everything account-specific is a repository variable
        assert not re.search(r"\b\d{12}\b", text), path.name


ROLE_OF_JOB = {  # (workflow, job) -> the repository variable naming the role it may assume
    ("deploy-infrastructure.yml", "plan"): "AWS_PLAN_ROLE_ARN",
    ("deploy-infrastructure.yml", "apply"): "AWS_APPLY_ROLE_ARN",
    ("build-and-push.yml", "image"): "AWS_IMAGE_PUSH_ROLE_ARN",
}


@pytest.mark.parametrize("name", ALL)
def test_each_job_assumes_only_the_role_meant_for_it(name):
    for job_name, job in load(name)["jobs"].items():
        roles = assumed_roles(job)
        expected = ROLE_OF_JOB.get((name, job_name))
        assert roles == ([f"${{{{ vars.{expected} }}}}"] if expected else []), f"{name}:{job_name}: {roles}"


def test_apply_role_is_used_only_behind_the_protected_environment():
    for path in WORKFLOWS.glob("*.yml"):
        for job_name, job in load(path.name)["jobs"].items():
            if "AWS_APPLY_ROLE_ARN" in json.dumps(job):
                assert job.get("environment") == "production", f"{path.name}:{job_name}"
                assert not any("terraform" in step.get("run", "") and " plan" in step.get("run", "")
                               for step in steps(job)), "the apply job applies the reviewed plan, it does not plan"


def test_plan_keeps_the_instance_count_autoscaling_chose():
    plan = load("deploy-infrastructure.yml")["jobs"]["plan"]
    count = next(step for step in steps(plan) if step.get("id") == "count")
    assert "scripts/deploy_instance_count.py" in count["run"] and "GITHUB_OUTPUT" in count["run"]
    planning = next(step for step in steps(plan) if "-out=tfplan" in step.get("run", ""))
    assert planning["env"]["TF_VAR_deploy_instance_count"] == "${{ steps.count.outputs.count }}"


def test_ci_plans_with_every_variable_the_stack_cannot_do_without():
    """A variable without a default that the stack refuses to plan without (a `var.X != null` precondition:
    image_tag, alarm_email) reaches CI's plan from a repository variable, so CI applies what an operator's
    terraform.tfvars applies, and cannot drop it (an alarm subscription an operator made, for one)."""
    from tests.support.workflows import repository_variable, terraform_variables

    stack = "".join(path.read_text() for path in (REPO / "infra").glob("*.tf"))
    required = set(re.findall(r"condition\s*=\s*var\.(\w+) != null", stack))
    assert {"image_tag", "alarm_email"} <= required
    passed = terraform_variables(load("deploy-infrastructure.yml")["jobs"]["plan"])
    assert required <= set(passed), required - set(passed)
    assert all(repository_variable(expression) for expression in passed.values()), passed


def test_the_release_build_frees_the_runner_s_disk_first():
    """The CUDA image's environment and its compressed layers need more than a runner's ~14 GB (infra/README.md,
    Cost): the job deletes the runner image's unused SDKs before it builds, and shows the free space."""
    job = load("build-and-push.yml")["jobs"]["image"]
    build = next(i for i, step in enumerate(steps(job)) if step.get("uses", "").startswith("docker/build-push-action@"))
    freeing = [step["run"] for step in steps(job)[:build] if "rm -rf" in step.get("run", "")]
    assert freeing and "df -h" in freeing[0] and "/usr/local/lib/android" in freeing[0], freeing


def test_the_apply_job_names_the_plan_file_the_reviewer_read():
    """The reviewer approves the plan the summary shows: the summary gives the plan file's SHA-256, and the
    apply job prints the SHA-256 of the file it applies."""
    jobs = load("deploy-infrastructure.yml")["jobs"]
    summary = next(step["run"] for step in steps(jobs["plan"]) if "GITHUB_STEP_SUMMARY" in step.get("run", ""))
    applying = next(step["run"] for step in steps(jobs["apply"]) if " apply " in step.get("run", ""))
    assert "sha256sum infra/tfplan" in summary and "sha256sum infra/tfplan" in applying
    assert applying.index("sha256sum") < applying.index("terraform -chdir=infra apply")
