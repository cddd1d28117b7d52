"""What the README and docs/ say about the scripts and the service, held to what they do."""

from __future__ import annotations

import re
import subprocess

import pytest

from handler.parse import RequestError, parse_request
from tests.support.helpers import REPO, script_help, subcommands

SCRIPTS = sorted(p.name for p in (REPO / "scripts").glob("*.py"))
SHELL_SCRIPTS = sorted(p.name for p in (REPO / "scripts").glob("*.sh"))
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Where scripts are run with flags: the docs, and what the README promises they are the same commands as.
RUNNERS = [*DOCS, REPO / "Makefile", *sorted((REPO / ".github" / "workflows").glob("*.yml")),
           *sorted((REPO / "scripts").glob("*.sh"))]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_and_subcommand_answers_help(script):
    for subcommand in [None, *subcommands(script)]:
        result = script_help(script, subcommand)
        assert result.returncode == 0 and "usage" in result.stdout.lower(), (script, subcommand, result.stderr)
        assert "exit codes" in script_help(script).stdout.lower() or subcommand, f"{script}: document exit codes"


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_scripts_answer_help_without_doing_anything(tmp_path, script):
    for flag in ("--help", "-h"):
        result = subprocess.run(["bash", str(REPO / "scripts" / script), flag], capture_output=True, text=True,
                                cwd=tmp_path, timeout=30)
        assert result.returncode == 0 and "usage" in result.stdout.lower(), result.stderr
    assert not list(tmp_path.iterdir()), "--help must not start any work"


def command_lines(path):
    """(line, in a code block) for each command a file shows: markdown code blocks and inline code, or
    every line of a Makefile or workflow."""
    text = path.read_text()
    if path.suffix != ".md":
        yield from ((line, True) for line in text.replace("\\\n", " ").splitlines())
        return
    for block, span in re.findall(r"```[a-z]*\n(.*?)```|`([^`\n]+)`", text, re.DOTALL):
        yield from ((line, True) for line in block.splitlines()) if block else [(span, False)]


def script_commands(path):
    """(script, subcommand, flags) wherever ``path`` runs a script, and for flags named on their own
    (`--deadline`), the script the text ran last (None after a code block ran some other program)."""
    subject = (None, None)
    for line, in_block in command_lines(path):
        # words, not shell parsing: a script run inside "$(...)" or a quoted trap is still a script run
        words = re.findall(r"""[^\s"'()$]+""", re.split(r"(?:^|\s)#", line, maxsplit=1)[0])
        if words and all(word.startswith("--") for word in words):
            if subject[0] in SCRIPTS:
                yield (*subject, words)
            continue
        for index, word in enumerate(words):
            named = re.fullmatch(r"(?:\S*/)?(\w+\.py)", word)
            if named and named.group(1) in SCRIPTS:
                script, rest = named.group(1), words[index + 1:]
                stop = next((i for i, w in enumerate(rest) if w in ("|", "&&", ";", ">", "||")), len(rest))
                rest = rest[:stop]
                sub = rest[0] if rest and rest[0] in subcommands(script) else None
                subject = (script, sub)
                yield script, sub, [w.split("=", 1)[0] for w in rest if w.startswith("--")]
                break
        else:
            if in_block and words:
                subject = (words[0], None)  # a block that runs another program: its flags are its own


def documented_flags():
    for path in RUNNERS:
        for script, sub, flags in script_commands(path):
            for flag in flags:
                yield pytest.param(path, script, sub, flag, id=f"{path.name}:{script}:{sub}:{flag}")


@pytest.mark.parametrize("path, script, sub, flag", list(documented_flags()))
def test_every_script_flag_the_docs_mention_exists(path, script, sub, flag):
    """A flag in the docs is a flag of the script (and subcommand) they are talking about: the one on the
    same command line, or, for a flag named on its own, the one they ran last."""
    text = script_help(script, sub).stdout
    assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), \
        f"{path.name} gives {flag} to {script} {sub or ''}, whose --help does not list it"


def accepted(media_type: str) -> bool:
    try:
        parse_request(b'{"prompt": "a cat"}', media_type)
    except RequestError as exc:
        assert exc.status == 415
        return False
    return True


def test_the_readme_names_the_content_types_that_get_415():
    """The handler takes JSON under any type that can carry it (SageMaker forwards the caller's type as is);
    the README's sentence about 415 names exactly those, so a reader can tell which requests get it."""
    readme = (REPO / "README.md").read_text()
    sentence = re.search(r"415 for [^.]*\.", readme.replace("\n", " ")).group(0)
    named = set(re.findall(r"`([\w.+*/-]+)`", sentence))
    candidates = {"application/json", "text/json", "text/plain", "application/octet-stream", "image/png",
                  "application/x-www-form-urlencoded", "multipart/form-data", "application/xml", "text/html",
                  "application/vnd.sdturbo+json"}
    for media_type in candidates:
        listed = media_type in named or ("*+json" in named and media_type.endswith("+json"))
        assert listed == accepted(media_type), f"{media_type}: the README's 415 sentence says otherwise"


def test_every_test_the_reliability_guarantees_name_exists():
    """docs/RELIABILITY.md proves each guarantee by naming a test: a renamed or moved test must not leave
    the guarantee pointing at nothing."""
    named = set(re.findall(r"\b(test_\w+)\b", (REPO / "docs" / "RELIABILITY.md").read_text()))
    defined = {path.stem for path in (REPO / "tests").rglob("test_*.py")}
    for path in (REPO / "tests").rglob("*.py"):
        defined |= set(re.findall(r"^\s*def (test_\w+)", path.read_text(), re.MULTILINE))
    assert named and not named - defined, f"docs/RELIABILITY.md names tests that do not exist: {named - defined}"


def test_the_docs_cite_nothing_a_reader_of_the_repository_cannot_see():
    """Someone with a clone has neither this project's issue tracker nor the folders beside the checkout: a
    figure says what was measured, on what, when and with which command, and a source is named where it is
    public."""
    outside = "../" + "shared/"
    for path in [*DOCS, *(REPO / name / "README.md" for name in ("infra", "scripts", "tests"))]:
        cited = re.findall(r"\b[Ii]ssues? #?\d+", path.read_text())
        assert not cited, f"{path.relative_to(REPO)} cites {cited}"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in tracked.decode().split("\0"):
        path = REPO / name
        if path.suffix in (".py", ".md", ".yaml", ".yml", ".tf", ".sh", ".properties") or path.name == "Makefile":
            assert outside not in path.read_text(errors="replace"), f"{name} points at {outside}, outside the repository"


def test_the_model_table_and_the_deploy_runbook_state_each_models_licence_with_its_card():
    """Issue 35: neither README said under which licence the models may be used, which matters before a paid
    endpoint goes in front of one. Each model gets a licence cell in the README's model table, and the
    runbook's model-data step names it too, each with a link to the model's card on the Hub."""
    from handler.models import MODELS

    readme = (REPO / "README.md").read_text()
    (row,) = [line for line in readme.splitlines() if line.startswith("| licence")]
    cells = [cell.strip() for cell in row.strip("|").split("|")[1:]]
    runbook = (REPO / "infra" / "README.md").read_text().split("### 5. Model data", 1)[1].split("\n### ", 1)[0]
    for (name, spec), cell in zip(MODELS.items(), cells, strict=True):
        card = f"https://huggingface.co/{spec.repo_id})"
        assert card in cell and card in runbook, f"{name}: its licence needs a link to its model card"
    assert "Non-Commercial Research Community License" in cells[1] and "sai-nc-community" in runbook
    assert "https://stability.ai/license" in readme and "https://stability.ai/license" in runbook


def quickstart_needs() -> str:
    """The Quickstart's prose before its first command: where a newcomer reads what to install."""
    section = (REPO / "README.md").read_text().split("## Quickstart", 1)[1]
    return section.split("```", 1)[0].replace("\n", " ")


def test_the_quickstart_lists_what_make_test_needs():
    """Issue 35: Terraform, root with cgroups (the image test) and registry access were said late or not at
    all; they stand where the Quickstart lists its own needs, with the versions the code requires."""
    needs = quickstart_needs()
    terraform = re.search(r'required_version = ">= (\d+\.\d+)', (REPO / "infra" / "versions.tf").read_text())
    assert f"Terraform ≥ {terraform.group(1)}" in needs
    for need in ("root", "cgroups", "deb.debian.org", "PyPI"):
        assert need in needs, f"the Quickstart does not say that `make test` needs {need}"


def test_every_doc_and_workflow_names_the_one_python_version_setup_cfg_requires():
    """Issue 35: the README said Python 3.10+, the infra prerequisites 3.11. One answer: setup.cfg's."""
    required = re.search(r"python_requires = >=(3\.\d+)", (REPO / "setup.cfg").read_text()).group(1)
    assert f"Python {required}" in quickstart_needs()
    sources = [*DOCS, REPO / "infra" / "README.md", *sorted((REPO / ".github" / "workflows").glob("*.yml"))]
    for path in sources:
        named = set(re.findall(r"[Pp]ython(?:-version:)? \"?(3\.\d+)", path.read_text()))
        assert named <= {required}, f"{path.name} names Python {sorted(named)}; setup.cfg requires {required}"
    ruff = re.search(r'target-version = "py(\d)(\d+)"', (REPO / "pyproject.toml").read_text()).groups()
    assert ".".join(ruff) == required, "ruff checks the code against another Python than setup.cfg's"


def test_git_ignores_what_the_readmes_commands_and_make_predict_write():
    """Issue 35: `make predict`'s image.png and the README curl's lighthouse-curl.png showed up in `git status`."""
    readme = (REPO / "README.md").read_text()
    written = set(re.findall(r"(?:\bOUT=|--out |> |-o )([\w.-]+\.(?:png|jpe?g|webp|b64|json))\b", readme))
    default = re.search(r"default: ([\w.-]+\.png)", script_help("invoke.py", "local").stdout)
    written |= {default.group(1), "lh-1.webp"}  # invoke.py's --out default (make predict's); --num-images 3's second
    assert {"image.png", "lighthouse.png", "lighthouse-curl.png"} <= written, written
    checked = subprocess.run(["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *sorted(written)],
                             cwd=REPO, capture_output=True, text=True).stdout.splitlines()
    unignored = [line.split("\t")[-1] for line in checked if line.startswith("::")]
    assert not unignored, f"git would show these as new files: {unignored}"


def test_the_quickstart_says_how_to_install_on_macos_and_how_to_tell_the_demos_device(caplog):
    """Issue 35: the Quickstart named only apt, and not what the demo does on Apple silicon. The line it tells a
    Mac user to look for is the one the handler logs when `device: auto` takes MPS."""
    from handler.device import select_device

    needs = quickstart_needs()
    assert re.search(r"`brew install [^`]*\bopenjdk@17\b[^`]*`", needs) and "jq`" in needs
    with caplog.at_level("INFO", logger="handler.device"):
        select_device("auto", cuda_available=lambda: False, mps_available=lambda: True, explain_cuda=lambda: "none")
    logged = re.match(r"device auto: using \w+", caplog.messages[-1]).group(0)
    assert f"`{logged}`" in needs and "grep 'device auto' logs/model_log.log" in needs, logged


def test_the_one_time_ci_setup_is_the_runbook_s_and_the_readme_points_to_it():
    """Two procedures for the same setup disagreed (the README applied infra/ before the repository variables,
    read AWS_REGION from a state that did not exist yet, and left out the subject template): the README
    names no repository variable and runs no setup command of its own, and links to the runbook's steps."""
    from tests.support import runbook

    delivery = (REPO / "README.md").read_text().split("## Delivery", 1)[1].split("\n## ", 1)[0]
    variables = set(runbook.repository_variables())
    assert variables and not {name for name in variables if re.search(rf"\b{name}\b", delivery)}
    assert "terraform -chdir=" not in delivery and "gh variable" not in delivery and "gh api" not in delivery
    anchor = re.search(r"\(infra/README\.md#([\w-]+)\)", delivery).group(1)
    titles = [line[3:] for line in runbook.README.read_text().splitlines() if line.startswith("## ")]
    assert anchor in {re.sub(r"[^\w\- ]", "", title).strip().lower().replace(" ", "-") for title in titles}
