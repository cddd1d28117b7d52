"""The tests mirror the code: a newcomer finds the test of a module by its name (tests/README.md)."""

from __future__ import annotations

import pytest

from tests.support.helpers import REPO


@pytest.mark.parametrize("package, tests", [("handler", "tests/handler"), ("scripts/sdturbo_ops", "tests/sdturbo_ops")])
def test_every_module_has_a_test_file_named_after_it(package, tests):
    modules = sorted(path.stem for path in (REPO / package).glob("*.py") if path.stem != "__init__")
    missing = [name for name in modules if not (REPO / tests / f"test_{name}.py").is_file()]
    assert modules and not missing, f"{package} modules without {tests}/test_<module>.py: {missing}"
