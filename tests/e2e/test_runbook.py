"""Every command of the first-deploy runbook in infra/README.md, checked against what it names.

The commands are read from the page (tests/support/runbook.py), never copied here: Terraform outputs, targets
and variables exist in the root the command runs in, and Terraform knows its flags; every flag a script
is given appears in that script's --help, and scripts that offer --dry-run run with it; make targets and
variables exist; files exist, or the runbook writes them, or they are git-ignored outputs; the repository
variables are exactly those the workflows read; AWS CLI operations, waiters and options exist in the API
models botocore ships; the docker build makes the release image. tests/e2e/test_infra_emulator.py runs the
first apply, the upload, the smoke call, the caller policy and the teardown against the AWS emulator.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.support import runbook
from tests.support.helpers import REPO, dockerfile_instructions, script_help, subcommands

pytestmark = pytest.mark.infra
INFRA, BOOTSTRAP = REPO / "infra", REPO / "infra" / "bootstrap"
WORKFLOWS = REPO / ".github" / "workflows"
# Everything the runbook may run. A new program here needs a check of its own below, or a reason not to.
PROGRAMS = {"terraform", "aws", "gh", "docker", "make", "git", "jq", "cat", "echo", "rm", ".venv/bin/python"}
# Options of the AWS CLI itself, not of an API operation.
AWS_CLI_OPTIONS = {"--query", "--output", "--region", "--profile", "--max-items", "--page-size", "--no-cli-pager",
                   "--starting-token", "--no-paginate", "--debug", "--endpoint-url"}
# AWS CLI commands that are the CLI's own, not API operations (the CLI's "customizations").
AWS_CLI_COMMANDS = {("ecr", "get-login-password"), ("logs", "tail"), ("s3", "rm")}
AWS_CLI_SERVICES = {"s3api": "s3"}  # CLI name -> botocore's, where they differ
# Options the CLI renames from the API's member names (awscli/customizations/argrename.py).
AWS_CLI_RENAMES = {("sns", "subscribe", "notification-endpoint"): "endpoint"}


@pytest.fixture(scope="module")
def commands() -> list[runbook.Command]:
    return runbook.all_commands()


def declared(root: Path, kind: str) -> set[str]:
    """Names of ``variable``/``output`` blocks, or ``type.name`` of resources, in a root's .tf files."""
    text = "".join(path.read_text() for path in root.glob("*.tf"))
    if kind == "resource":
        return {f"{t}.{n}" for t, n in re.findall(r'^resource\s+"([^"]+)"\s+"([^"]+)"', text, re.MULTILINE)}
    return set(re.findall(rf'^{kind}\s+"([^"]+)"', text, re.MULTILINE))


def variable_default(root: Path, name: str) -> str:
    text = (root / "variables.tf").read_text()
    block = re.search(rf'^variable\s+"{name}"\s*{{(.*?)^}}', text, re.MULTILINE | re.DOTALL).group(1)
    return re.search(r"^\s*default\s*=\s*(.+)$", block, re.MULTILINE).group(1).strip()


@cache
def terraform_help(subcommand: str) -> str:
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull}
    texts = [subprocess.run(["terraform", *name.split(), "-help"], capture_output=True, text=True, env=env).stdout
             for name in {subcommand, "plan" if subcommand in ("apply", "destroy") else subcommand}]
    return "\n".join(texts)


def git_ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0


def written(commands: list[runbook.Command]) -> set[str]:
    """Repository paths the runbook itself creates."""
    paths = set()
    for command in commands:
        paths.update(command.writes)
        if command.program == "terraform":
            root = runbook.terraform_root(command).relative_to(REPO).as_posix()
            paths.update(f"{root}/{out}" for out in command.values("-out"))
    return paths


def github_variables(direction: str, commands: list[runbook.Command]) -> list[str]:
    return [c.argv[3] for c in commands if c.argv[:3] == ("gh", "variable", direction)]


# ------------------------------------------------------------------ the page itself

def test_the_runbook_is_numbered_steps_of_known_commands(commands):
    for section, count in ((runbook.FIRST_DEPLOY, 11), (runbook.TEARDOWN, 5)):
        titles = [step.title for step in runbook.steps(section)]
        first = 0 if section == runbook.FIRST_DEPLOY else 1
        assert [title.split(".", 1)[0] for title in titles] == [str(n) for n in range(first, first + count)], titles
        assert all(step.commands for step in runbook.steps(section)), "a step without a command"
    unknown = {command.program for command in commands if command.argv} - PROGRAMS
    assert not unknown, f"the runbook runs {unknown}: add a check for it in tests/e2e/test_runbook.py"


def test_the_plan_s_refusals_name_real_steps():
    """A plan the stack refuses (no image_tag, no alarm_email) says which runbook steps to follow: by title."""
    messages = re.findall(r'error_message\s*=\s*"([^\n]*infra/README\.md[^\n]*)"',
                          "".join(path.read_text() for path in INFRA.glob("*.tf")))
    titles = [step.title for step in runbook.steps(runbook.FIRST_DEPLOY)]
    named = [title for message in messages for title in re.findall(r'\\"([^\\]+)\\"', message)]
    assert len(messages) >= 2 and named and all(title in titles for title in named), (named, titles)


# ------------------------------------------------------------------ Terraform

def test_terraform_commands_name_outputs_targets_and_variables_their_root_declares(commands):
    checked = 0
    for command in [c for c in commands if c.program == "terraform"]:
        root = runbook.terraform_root(command)
        assert root in (INFRA, BOOTSTRAP), command.argv
        words = runbook.terraform_args(command)
        subcommand = words[0]
        if subcommand == "providers" and len(words) > 1 and not words[1].startswith("-"):
            subcommand, words = f"providers {words[1]}", words[1:]  # `providers lock` has flags of its own
        if subcommand == "output":
            assert command.flag("-raw") in declared(root, "output"), command.argv
        for target in command.values("-target"):
            assert target in declared(root, "resource"), f"{target} is not a resource of {root.name}"
        for assignment in command.values("-var"):
            assert assignment.split("=", 1)[0] in declared(root, "variable"), command.argv
        for flag in [w.split("=", 1)[0] for w in words[1:] if w.startswith("-")]:
            assert re.search(rf"^\s+{re.escape(flag)}\b", terraform_help(subcommand), re.MULTILINE), \
                f"terraform {subcommand} has no {flag}"
        checked += 1
    assert checked > 20


def test_variable_files_set_only_declared_variables(commands):
    files = [c for c in commands if any(w.endswith((".tfvars", "_override.tf")) for w in c.writes)]
    assert {Path(c.writes[0]).name for c in files} >= {"terraform.tfvars", "model.auto.tfvars", "teardown_override.tf"}
    for command in files:
        path = REPO / command.writes[0]
        text = command.stdin or " ".join(command.argv[1:])
        if path.name.endswith("_override.tf"):  # overrides may only touch resources that exist
            for kind, name in re.findall(r'^resource\s+"([^"]+)"\s+"([^"]+)"', text, re.MULTILINE):
                assert f"{kind}.{name}" in declared(path.parent, "resource"), (path, kind, name)
            continue
        names = re.findall(r"^\s*(\w+)\s*=", text, re.MULTILINE)
        assert names and set(names) <= declared(path.parent, "variable"), (path, names)


def test_committed_model_prefix_reaches_ci():
    # A *.auto.tfvars file is read by every plan, CI's included, only if git does not ignore it.
    assert not git_ignored("infra/model.auto.tfvars") and not git_ignored("infra/profile.auto.tfvars")
    assert git_ignored("infra/terraform.tfvars") and git_ignored("infra/backend.hcl")


def test_backend_config_is_the_one_ci_uses(commands):
    """The operator's backend.hcl and CI's init pass the same settings: the bucket, its region and the state
    key's ARN (without kms_key_id the backend writes SSE-S3, overriding the bucket's KMS default); what every
    init shares (the state's key, encryption, the lock object) is infra/backend.tf's, and there is no lock
    table."""
    from tests.support.workflows import backend_settings, load

    (command,) = [c for c in commands if c.writes == ("infra/backend.hcl",)]
    written_keys = dict(re.findall(r'^(\w+)\s*=\s*"?([^"\n]*)"?', command.stdin, re.MULTILINE))
    example = dict(re.findall(r'^(\w+)\s*=\s*"?([^"\n]*)"?', (INFRA / "backend.hcl.example").read_text(), re.MULTILINE))
    jobs = load("deploy-infrastructure.yml")["jobs"]
    assert set(written_keys) == set(example) == set(backend_settings(jobs["plan"])) == set(backend_settings(jobs["apply"]))
    assert set(written_keys) == {"bucket", "region", "kms_key_id"}, written_keys
    assert runbook.raw_output(written_keys["kms_key_id"]) == "state_kms_key_arn"
    backend = (INFRA / "backend.tf").read_text()
    assert re.search(r"use_lockfile\s*=\s*true", backend) and re.search(r"encrypt\s*=\s*true", backend)
    assert "dynamodb_table" not in backend


# ------------------------------------------------------------------ scripts and make

def test_every_flag_given_to_a_script_is_in_its_help(commands):
    checked = 0
    for command in commands:
        call = runbook.script_call(command)
        if call is None:
            continue
        script, args = call
        assert script.is_file(), script
        subcommand = args[0] if args and args[0] in subcommands(script.name) else None
        help_run = script_help(script.name, subcommand)
        assert help_run.returncode == 0 and "usage" in help_run.stdout.lower(), (script.name, subcommand, help_run.stderr)
        for flag in [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]:
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_run.stdout), \
                f"{script.name} {subcommand or ''} has no {flag}"
        checked += 1
    assert checked >= 6


def test_scripts_with_a_dry_run_run_as_written(commands, tmp_path):
    """publish.py as the runbook calls it, with --dry-run: the archive folder and the Terraform outputs are
    stand-ins, every flag is the runbook's."""
    archive = tmp_path / "archive"
    (archive / "MAR-INF").mkdir(parents=True)
    (archive / "MAR-INF" / "MANIFEST.json").write_text("{}")
    (archive / "handler.py").write_text("")
    outputs = {name: {"value": f"example-{name}"} for name in declared(INFRA, "output")}
    outputs["model_data_uri"] = {"value": "s3://example-artifacts/models/sdturbo/v1/"}
    outputs["region"] = {"value": "us-east-1"}
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    ran = 0
    for command in commands:
        call = runbook.script_call(command)
        if call is None or "--dry-run" not in script_help(call[0].name).stdout:
            continue
        script, args = call
        args = [str(tmp_path / "outputs.json") if previous == "--from-terraform" else
                str(archive) if arg == "model-store/sdturbo" else arg
                for previous, arg in zip([""] + args[:-1], args, strict=True)]
        result = subprocess.run([sys.executable, str(script), *args, *([] if "--dry-run" in args else ["--dry-run"])],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "AWS_EC2_METADATA_DISABLED": "true"})
        prefix = command.flag("--prefix") or "models/sdturbo/v1/"
        assert result.returncode == 0, result.stderr
        assert f"-> s3://example-artifacts/{prefix}" in result.stdout, result.stdout
        ran += 1
    assert ran >= 3


def test_make_targets_and_variables_exist(commands):
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    variables = set(re.findall(r"^(\w+)\s*[?:]?=", makefile, re.MULTILINE))
    makes = [c for c in commands if c.program == "make"]
    assert {c.argv[1] for c in makes} >= {"model", "mar"}
    for command in makes:
        for word in command.argv[1:]:
            if "=" in word:
                assert word.split("=", 1)[0] in variables, word
            else:
                assert word in targets, f"make has no target {word}"


def test_archive_matches_the_endpoint_s_profile(commands):
    """Each `make mar` of the runbook builds the archive of a model the stack takes (its profile), with the
    workers that profile gives the endpoint (handler/profiles.yaml), and nothing else set by hand."""
    import yaml

    profiles = yaml.safe_load((REPO / "handler" / "profiles.yaml").read_text())
    models = set()
    for command in (c for c in commands if c.argv[:2] == ("make", "mar")):
        words = dict(word.split("=", 1) for word in command.argv[2:])
        model = words.pop("MODEL", variable_default(INFRA, "model").strip('"'))
        workers = profiles[model]["endpoint"].get("workers")
        assert words == ({"WORKERS": str(workers)} if workers else {}), (command.argv, model)
        models.add(model)
    assert models == set(profiles)
    profile_file = [c for c in commands if c.writes == ("infra/profile.auto.tfvars",)]
    assert [c.argv[1] for c in profile_file] == ['model = "sdxl-turbo"']


def test_the_model_is_chosen_before_the_apply_it_sizes(commands):
    """SDXL-turbo's archive with SD-turbo's sizing cannot load: the file that names the model is written
    before the first plan of the stack, in the step that builds the archive, and the page says which model
    the stack deploys when none is named."""
    deploy = [c for s in runbook.steps(runbook.FIRST_DEPLOY) for c in s.commands]
    choice = next(i for i, c in enumerate(deploy) if c.writes == ("infra/profile.auto.tfvars",))
    first_plan = next(i for i, c in enumerate(deploy) if c.program == "terraform"
                      and c.flag("-chdir") == "infra" and runbook.terraform_args(c)[:1] == ["plan"])
    assert choice < first_plan, "the model is chosen after the plan it changes"
    archive = [i for i, c in enumerate(deploy) if c.argv[:2] == ("make", "mar") and "MODEL=sdxl-turbo" in c.argv]
    assert archive and deploy[archive[0]].step == deploy[choice].step
    default = variable_default(INFRA, "model").strip('"')
    assert f'`model = "{default}"`' in runbook.step("5.").text


# ------------------------------------------------------------------ files, GitHub

def test_files_named_exist_or_are_written_or_generated(commands):
    created = written(commands)
    top = {path.name for path in REPO.iterdir()}
    prose = " ".join(step.text for title in (runbook.FIRST_DEPLOY, runbook.TEARDOWN) for step in runbook.steps(title))
    candidates = {word for c in commands for word in c.argv[1:]}
    candidates |= set(re.findall(r"`([\w./-]+)`", prose))
    paths = {p.removeprefix("file://") for p in candidates if "/" in p and p.split("/", 1)[0] in top and "$" not in p}
    assert len(paths) > 10
    for path in sorted(paths):
        assert (REPO / path).exists() or path in created or git_ignored(path), f"{path}: not in the repository"
    for command in [c for c in commands if c.program == "rm"]:
        for path in [word for word in command.argv[1:] if not word.startswith("-")]:
            assert path in created or git_ignored(path), f"the teardown would delete {path}, which git tracks"


def test_teardown_removes_what_the_deploy_wrote(commands):
    deploy = [c for s in runbook.steps(runbook.FIRST_DEPLOY) for c in s.commands]
    removed = {path for c in commands if c.program == "rm" for path in c.argv[1:] if not path.startswith("-")}
    kept = {"infra/model.auto.tfvars", "infra/profile.auto.tfvars"}  # committed with the model they deploy
    local = {p for p in written(deploy) if p.startswith("infra/")} - kept
    assert local <= removed, local - removed
    assert {"infra/bootstrap/terraform.tfstate", "infra/bootstrap/teardown_override.tf"} <= removed


def test_repository_variables_are_the_workflows(commands):
    read = set(re.findall(r"\bvars\.(\w+)", "".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))))
    assert set(github_variables("set", commands)) == read
    assert set(github_variables("delete", commands)) == read


def _github_requests(step: runbook.Step) -> dict[tuple[str, str], dict | None]:
    """(method, path) -> the JSON body of each `gh api` request of a step (a `$(...)` in it read as 0)."""
    found = {}
    for command in [c for c in step.commands if c.argv[:2] == ("gh", "api") and not c.nested]:
        method = command.flag("--method") or "GET"
        path = next(word for word in command.argv[2:] if word.startswith("repos/"))
        body = command.stdin
        for inner in runbook.substitutions(body):
            body = body.replace(f"$({inner})", "0")
        found[(method, path)] = json.loads(body) if body else None
    return found


def test_main_is_protected_and_an_apply_needs_a_second_person():
    """Without branch protection a push to main is planned for the apply unreviewed; without required
    reviewers who may not approve their own run, the person who merged a change approves its apply."""
    requests = _github_requests(runbook.step("2."))
    branch = variable_default(BOOTSTRAP, "github_branch").strip('"')
    protection = requests[("PUT", f"repos/{{owner}}/{{repo}}/branches/{branch}/protection")]
    assert protection["required_pull_request_reviews"]["required_approving_review_count"] >= 1
    assert protection["enforce_admins"] is True
    environment = variable_default(BOOTSTRAP, "github_environment").strip('"')
    (settings,) = [body for (method, path), body in requests.items()
                   if method == "PUT" and path == f"repos/{{owner}}/{{repo}}/environments/{environment}"]
    assert settings["prevent_self_review"] is True and len(settings["reviewers"]) >= 2
    assert "REVIEWER" in runbook.step("2.").text


def test_teardown_undoes_the_github_settings():
    made = {path for (method, path) in _github_requests(runbook.step("2.")) if method in ("PUT", "POST")}
    undone = {path for (method, path), body in _github_requests(runbook.step("5.", runbook.TEARDOWN)).items()
              if method == "DELETE" or (method == "PUT" and body is None)}
    covered = {path for path in made if any(path.startswith(u) for u in undone)}
    assert covered == made, made - covered


def test_workflows_the_runbook_starts_exist_and_start_by_hand(commands):
    named = {c.flag("--workflow") or c.argv[3] for c in commands if c.argv[:3] in (("gh", "workflow", "run"),
                                                                                  ("gh", "run", "list"))}
    assert named
    for name in named:
        assert "workflow_dispatch:" in (WORKFLOWS / name).read_text(), name
    production = re.findall(r"environments/(\w+)", " ".join(" ".join(c.argv) for c in commands))
    assert set(production) == {variable_default(BOOTSTRAP, "github_environment").strip('"')}


# ------------------------------------------------------------------ AWS CLI, docker

@cache
def service_model(cli_name: str):
    import botocore.session

    return botocore.session.get_session().get_service_model(AWS_CLI_SERVICES.get(cli_name, cli_name))


def test_aws_cli_commands_are_operations_of_the_api(commands):
    import botocore.session
    from botocore import xform_name

    checked = 0
    for command in [c for c in commands if c.program == "aws"]:
        service, operation = command.argv[1], command.argv[2]
        model = service_model(service)
        if (service, operation) in AWS_CLI_COMMANDS:
            continue
        if operation == "wait":
            waiters = botocore.session.get_session().get_waiter_model(model.service_name)
            names = {xform_name(name, "-"): name for name in waiters.waiter_names}
            assert command.argv[3] in names, f"aws {service} has no waiter {command.argv[3]}"
            operation_name = waiters.get_waiter(names[command.argv[3]]).operation
            options = command.argv[4:]
        else:
            by_cli_name = {xform_name(name, "-"): name for name in model.operation_names}
            assert operation in by_cli_name, f"aws {service} has no {operation}"
            operation_name, options = by_cli_name[operation], command.argv[3:]
        members = {xform_name(name, "-") for name in model.operation_model(operation_name).input_shape.members}
        for option in [o for o in options if o.startswith("--") and o not in AWS_CLI_OPTIONS]:
            name = AWS_CLI_RENAMES.get((service, command.argv[2], option[2:]), option[2:])
            assert name in members or (name.startswith("no-") and name[3:] in members), \
                f"aws {service} {command.argv[2]}: no {option} (the operation takes {sorted(members)})"
        checked += 1
    assert checked > 15


def test_the_image_built_by_hand_is_the_release_image(commands):
    defaults = {}
    for instruction, arguments in dockerfile_instructions():
        if instruction == "ARG" and "=" in arguments:
            name, value = arguments.split("=", 1)
            defaults[name] = value
    (build,) = [c for c in commands if c.argv[:2] == ("docker", "build")]
    given = dict(arg.split("=", 1) for arg in build.values("--build-arg"))
    assert given == defaults, f"the runbook's build arguments {given} are not the Dockerfile's defaults {defaults}"
    assert build.flag("--platform") in (WORKFLOWS / "build-and-push.yml").read_text()
    (push,) = [c for c in commands if c.argv[:2] == ("docker", "push")]
    assert push.argv[2] == build.flag("-t")


LOCK_PLATFORMS = {"linux_amd64", "darwin_arm64", "darwin_amd64"}


@pytest.mark.parametrize("root", ["infra/bootstrap", "infra"])
def test_the_provider_lock_covers_macos_before_the_first_init(commands, root):
    """The committed lock files were written on linux_amd64 with no registry in reach, so they hold that
    platform's checksums alone and `terraform init` on a Mac fails: the runbook locks every platform
    first, unless the committed file already holds more than one platform's hashes."""
    lock = (REPO / root / ".terraform.lock.hcl").read_text()
    if len(re.findall(r'"h1:', lock)) >= len(LOCK_PLATFORMS):
        return  # the other platforms' hashes were committed
    ran = [c for c in commands if c.program == "terraform" and c.flag("-chdir") == root]
    words = [runbook.terraform_args(c) for c in ran]
    locks = [i for i, w in enumerate(words) if w[:2] == ["providers", "lock"]]
    inits = [i for i, w in enumerate(words) if w[:1] == ["init"]]
    assert locks and inits and locks[0] < inits[0], f"no `terraform -chdir={root} providers lock` before its init"
    assert set(ran[locks[0]].values("-platform")) == LOCK_PLATFORMS
