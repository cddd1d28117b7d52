"""The tests mirror the code: a newcomer finds the test of a module by its name (tests/README.md)."""

from __future__ import annotations

import ast

import pytest

from tests.support.helpers import REPO


@pytest.mark.parametrize("package, tests", [("handler", "tests/handler"), ("scripts/sdturbo_ops", "tests/sdturbo_ops")])
def test_every_module_has_a_test_file_named_after_it(package, tests):
    modules = sorted(path.stem for path in (REPO / package).glob("*.py") if path.stem != "__init__")
    missing = [name for name in modules if not (REPO / tests / f"test_{name}.py").is_file()]
    assert modules and not missing, f"{package} modules without {tests}/test_<module>.py: {missing}"


def imported_modules(path) -> set[str]:
    """The absolute names of the modules a Python file imports (relative imports resolved from its package)."""
    package = path.relative_to(REPO).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            # ``from tests.handler import test_engine`` imports the module test_engine itself
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_no_test_module_imports_another():
    """Builders and tables that several tests share live in tests/support/; a test module (conftest.py
    included) that imports another one makes that one a helper library nobody can find or change safely."""
    offenders = {}
    for path in sorted((REPO / "tests").rglob("*.py")):
        foreign = {module for module in imported_modules(path)
                   if module.startswith("tests.") and not module.startswith("tests.support.")
                   and (REPO / f"{module.replace('.', '/')}.py").is_file()}
        if foreign:
            offenders[str(path.relative_to(REPO))] = sorted(foreign)
    assert not offenders, f"move what these import into tests/support/: {offenders}"


def test_the_readmes_layout_map_names_every_handler_file():
    """README's "How it is built" map is where a newcomer reads what each file of the service is for."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("## How it is built", 1)[1].split("```", 2)[1]
    handler_part = block.split("handler/", 1)[1].split("\nscripts/", 1)[0]
    named = {line.split()[0] for line in handler_part.splitlines() if line.startswith("  ") and line.split()
             and not line.startswith("   ")}
    shipped = {path.name for path in (REPO / "handler").iterdir()
               if path.suffix in (".py", ".yaml") and path.name != "__init__.py"}
    assert not shipped - named, f"README's layout map lacks {sorted(shipped - named)}"


# What a maintainer reads in one sitting; a module that grows past it likely does two jobs.
MAX_HANDLER_MODULE_LINES = 300


def test_no_handler_module_is_over_300_lines():
    """The service's own code stays in small modules with one job each (schema.py once held the parser and
    the README's table generator as well)."""
    sizes = {path.name: len(path.read_text().splitlines()) for path in (REPO / "handler").glob("*.py")}
    assert not {name: n for name, n in sizes.items() if n > MAX_HANDLER_MODULE_LINES}, sizes
