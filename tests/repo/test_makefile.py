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
