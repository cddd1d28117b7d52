"""A Terraform root copied to a scratch folder and pointed at the AWS emulator, run the way CI runs it.

The copy gets one override file (``zz_emulator_override.tf``) that points the AWS provider's endpoints at
the emulator; the stack itself is never edited. Each run writes Terraform's debug log
(``TF_LOG_PROVIDER=DEBUG`` for the provider, ``TF_LOG_CORE=DEBUG`` for the S3 backend), from which the
AWS requests it sent are read, so the tests can hold them against the CI roles' policies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.terraform_trace import Operation, read_operations

# Every service either root talks to (the provider's endpoint names).
SERVICES = ["applicationautoscaling", "cloudwatch", "dynamodb", "ec2", "ecr", "iam", "kms", "logs", "s3", "sagemaker",
            "sns", "sts"]
FAKE_KEYS = {"AWS_ACCESS_KEY_ID": "emulator", "AWS_SECRET_ACCESS_KEY": "emulator"}


def plugin_dir() -> str | None:
    """A local provider mirror (…/registry.terraform.io/hashicorp/aws/5.x), when the machine has one."""
    candidates = [os.environ.get("TF_PLUGIN_DIR", ""), "/opt/tf-plugins", "/usr/share/terraform/plugins"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "registry.terraform.io").is_dir():
            return candidate
    return None


def outside_files(root: Path) -> list[str]:
    """Paths, relative to the root's parent, of the files the root reads with file("${path.module}/../...")."""
    pattern = re.compile(r'file\("\$\{path\.module\}/\.\./([^"]+)"\)')
    return sorted({match for path in root.glob("*.tf") for match in pattern.findall(path.read_text())})


def provider_override(url: str) -> str:
    """The provider settings that send every request to the emulator (never to AWS)."""
    endpoints = "\n".join(f"    {service} = \"{url}\"" for service in SERVICES)
    # skip_requesting_account_id stays off: with it the provider invents ARNs that differ from the
    # emulator's and every plan shows changes.
    return f"""provider "aws" {{
  access_key                  = "{FAKE_KEYS['AWS_ACCESS_KEY_ID']}"
  secret_key                  = "{FAKE_KEYS['AWS_SECRET_ACCESS_KEY']}"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true

  endpoints {{
{endpoints}
  }}
}}
"""


def backend_config(url: str, settings: dict[str, str]) -> str:
    """-backend-config for the main root's S3 backend: ``settings`` (what CI's init passes, with the values the
    runbook gives its repository variables), and the emulator's endpoints and credentials."""
    given = "\n".join(f"{key} = {value if value in ('true', 'false') else json.dumps(value)}"
                      for key, value in settings.items())
    return f"""{given}
access_key                  = "{FAKE_KEYS['AWS_ACCESS_KEY_ID']}"
secret_key                  = "{FAKE_KEYS['AWS_SECRET_ACCESS_KEY']}"
skip_credentials_validation = true
skip_requesting_account_id  = true
skip_metadata_api_check     = true
use_path_style              = true
endpoints = {{
  s3       = "{url}"
  dynamodb = "{url}"
  iam      = "{url}"
  sts      = "{url}"
}}
"""


@dataclass
class Run:
    """One terraform command: what it printed, how long it took, and the AWS requests it sent."""

    name: str
    role: str  # who runs it in CI: "admin" (by hand), "plan" or "apply"
    args: list[str]
    returncode: int
    output: str
    seconds: float
    operations: list[Operation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, chars: int = 4000) -> str:
        return f"terraform {' '.join(self.args)} exited {self.returncode}:\n{self.output[-chars:]}"


class Root:
    """A scratch copy of one Terraform root whose AWS provider talks to the emulator."""

    def __init__(self, source: Path, scratch: Path, emulator_url: str, logs: Path):
        self.path = scratch
        self.logs = logs
        shutil.copytree(source, scratch, ignore=shutil.ignore_patterns(
            ".terraform*", "terraform.tfstate*", "tests", "*.tfvars", "backend.hcl", "tfplan"))
        # Files the root reads from beside itself (the model profiles the archive builder reads too) go to the
        # same place beside the copy, so the copy reads them as the checkout does.
        for path in outside_files(source):
            (scratch.parent / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.parent / path, scratch.parent / path)
        (scratch / "zz_emulator_override.tf").write_text(provider_override(emulator_url))
        logs.mkdir(parents=True, exist_ok=True)
        cli_config = logs / "terraformrc"
        cli_config.write_text("")  # no ~/.terraformrc, no registry: the provider comes from the local mirror
        self.env = {**os.environ, **FAKE_KEYS, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "NO_COLOR": "1",
                    "TF_CLI_CONFIG_FILE": str(cli_config), "AWS_EC2_METADATA_DISABLED": "true",
                    "TF_LOG_PROVIDER": "DEBUG", "TF_LOG_CORE": "DEBUG"}
        self.env.pop("TF_LOG", None)

    def write(self, name: str, text: str) -> Path:
        target = self.path / name
        target.write_text(text)
        return target

    def init(self, name: str, role: str, *args: str) -> Run:
        mirror = plugin_dir()
        return self.run(name, role, "init", "-input=false", "-no-color",
                        *([f"-plugin-dir={mirror}"] if mirror else []), *args)

    def run(self, name: str, role: str, *args: str, timeout: float = 600) -> Run:
        return self.start(name, role, *args).wait(timeout)

    def start(self, name: str, role: str, *args: str) -> "Running":
        """Start a terraform command in the background; ``wait()`` gives its Run."""
        return Running(self, name, role, list(args))


class Running:
    """A terraform command started by :meth:`Root.start`."""

    def __init__(self, root: Root, name: str, role: str, args: list[str]):
        self.root, self.name, self.role, self.args = root, name, role, args
        self.log = root.logs / f"{name}.log"
        self.out = root.logs / f"{name}.out"
        self.log.unlink(missing_ok=True)
        self.started = time.monotonic()
        with open(self.out, "w") as out:
            self.process = subprocess.Popen(["terraform", *args], cwd=root.path, stdout=out,
                                            stderr=subprocess.STDOUT, text=True,
                                            env={**root.env, "TF_LOG_PATH": str(self.log)})

    def wait(self, timeout: float = 600) -> Run:
        try:
            returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            returncode = self.process.wait()
        seconds = time.monotonic() - self.started
        return Run(self.name, self.role, self.args, returncode, self.out.read_text(), seconds,
                   read_operations(self.log))
