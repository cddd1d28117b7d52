"""The GitHub Actions workflows read as data: their jobs and steps, and what a job hands Terraform (its
backend settings and variables) and AWS (the role it assumes), each as the expression the workflow writes
(``${{ vars.NAME }}`` for a repository variable). The workflow tests check them, and the emulator test runs
CI's init and plans with what they say, resolved through the runbook's repository variables."""

from __future__ import annotations

import re
import shlex

import yaml

from tests.support.helpers import REPO

WORKFLOWS = REPO / ".github" / "workflows"
OIDC_ACTION = "aws-actions/configure-aws-credentials"
VARIABLE = re.compile(r"^\$\{\{\s*vars\.(\w+)\s*\}\}$")


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as True
    return workflow


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def uses(job: dict) -> list[str]:
    return [step["uses"] for step in steps(job) if "uses" in step]


def repository_variable(expression: str) -> str | None:
    """NAME, for an expression that is exactly ``${{ vars.NAME }}``."""
    match = VARIABLE.match(expression.strip())
    return match.group(1) if match else None


def backend_settings(job: dict) -> dict[str, str]:
    """The ``-backend-config="key=value"`` settings of the job's `terraform init`, each value with the step's
    environment variables replaced by their expressions."""
    (init,) = [step for step in steps(job) if "terraform -chdir=infra init" in step.get("run", "")]
    env = init.get("env", {})
    settings = {}
    for word in shlex.split(init["run"].replace("\\\n", " ")):
        if word.startswith("-backend-config="):
            key, _, value = word.removeprefix("-backend-config=").partition("=")
            settings[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), value)
    return settings


def terraform_variables(job: dict) -> dict[str, str]:
    """The Terraform variables the job sets through ``TF_VAR_*`` in its environment: name -> expression."""
    return {key.removeprefix("TF_VAR_"): str(value) for key, value in job.get("env", {}).items()
            if key.startswith("TF_VAR_")}


def assumed_roles(job: dict) -> list[str]:
    return [step["with"]["role-to-assume"] for step in steps(job) if step.get("uses", "").startswith(OIDC_ACTION)]


def push_branches(workflow: dict) -> list[str]:
    return (workflow["on"].get("push") or {}).get("branches", [])
