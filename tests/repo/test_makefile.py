"""The Makefile holds overrides, not defaults: each default has one home (the tools', paths.py's)."""

from __future__ import annotations

import re
import subprocess

from sdturbo_ops import paths
from tests.support.helpers import REPO

MAKEFILE = (REPO / "Makefile").read_text()


def test_the_makefiles_settings_are_unset_unless_given():
    """`make mar` once packed WORKERS ?= 1 over the model-config.yaml's own; a changed default there had no
    effect through make."""
    for name in ("WORKERS", "MODEL_STORE", "SERVE_LOGS", "SERVE_STATE", "OUT", "PORT"):
        assert re.search(rf"^{name} \?=[ \t]*$", MAKEFILE, re.MULTILINE), f"the Makefile restates {name}'s default"


def test_the_makefile_takes_the_trees_paths_from_paths_py():
    for name, path in paths.MAKE_VARIABLES.items():
        spelled = str(path.relative_to(paths.ROOT))
        assert spelled not in MAKEFILE, f"the Makefile spells out {spelled}: paths.py's {name} is its home"
    printed = subprocess.run(["make", "--no-print-directory", "-s", "-f", "Makefile", "-f", "-", "print-paths"],
                             input="print-paths:\n\t@echo $(TINY_SD) $(DEMO_STORE) $(PLUGIN_JAR)\n", cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    assert printed == [str(p.relative_to(paths.ROOT)) for p in (paths.TINY_SD, paths.DEMO_STORE, paths.PLUGIN_JAR)]


def test_make_help_lines_up_and_the_readme_lists_every_target_it_shows():
    """Issue 35: names longer than the column pushed their text out of line, and the README's list of targets
    left out install, tools, compiled-kernels and container-tools."""
    shown = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    rows = [re.match(r"  (\S+)\s+", line) for line in shown]
    assert len({row.end() for row in rows}) == 1, "\n".join(shown)
    readme = (REPO / "README.md").read_text().split("## Make targets", 1)[1]
    listed = re.findall(r"`([\w-]+)`", readme.split("`make help` lists them:", 1)[1].split(".", 1)[0])
    assert sorted(listed) == sorted(row.group(1) for row in rows)


# What GNU make 3.81, the one macOS ships, does not have: each came in 3.82 or later (GNU make's NEWS).
NEWER_THAN_MAKE_3_81 = {
    ".SHELLFLAGS (3.82)": r"\.SHELLFLAGS\b",
    ".ONESHELL (3.82)": r"^\.ONESHELL\b",
    ".RECIPEPREFIX (3.82)": r"\.RECIPEPREFIX\b",
    "undefine (3.82)": r"^\s*(?:override\s+)?undefine\s",
    "private (3.82)": r"(?:^|:)\s*(?:export\s+|override\s+)*private\s+\S+\s*[:+?!]?=",
    "define with an operator (3.82)": r"^\s*define\s+\S+\s*[:+?!]*=",
    "!= (4.0)": r"^[\w.-]+\s*!=",
    "::= (4.0)": r"::=",
    "$(file) (4.0)": r"\$\(file\s",
    "$(guile) (4.0)": r"\$\(guile\s",
    ".SHELLSTATUS (4.2)": r"\.SHELLSTATUS\b",
    ".EXTRA_PREREQS (4.3)": r"\.EXTRA_PREREQS\b",
    "$(let) (4.4)": r"\$\(let\s",
    "$(intcmp) (4.4)": r"\$\(intcmp\s",
    ".NOTINTERMEDIATE (4.4)": r"\.NOTINTERMEDIATE\b",
}


def test_the_makefile_uses_nothing_newer_than_the_make_macos_ships():
    """Issue 35: macOS's make 3.81 ignores .SHELLFLAGS (3.82), so every recipe there silently lost
    -eu -o pipefail. The Makefile keeps to 3.81: a construct of a later make fails this test."""
    code = [line for line in MAKEFILE.splitlines() if not line.lstrip().startswith("#")]
    for construct, pattern in NEWER_THAN_MAKE_3_81.items():
        used = [line for line in code if re.search(pattern, line)]
        assert not used, f"GNU make 3.81 (macOS's) has no {construct}: {used}"


def test_recipes_stop_at_a_failed_pipe_and_an_unset_variable_as_make_3_81_runs_them():
    """make 3.81 always runs a recipe as "$(SHELL) -c LINE": with .SHELLFLAGS set to its plain -c here, a
    failing command inside a pipe and an unset variable must still fail the recipe."""
    for recipe in ("false | true", 'echo "$$NO_SUCH_VARIABLE_35"'):
        probe = f"probe:\n\t{recipe}\n\t@echo went-on\n"
        run = subprocess.run(["make", "--no-print-directory", "-s", "-f", "Makefile", "-f", "-", "probe",
                              ".SHELLFLAGS=-c"], input=probe, cwd=REPO, capture_output=True, text=True)
        assert run.returncode != 0 and "went-on" not in run.stdout, (recipe, run.stdout, run.stderr)
