"""The stack reads what the container writes: the dashboard's and the cold-start alarm's namespace, dimensions
and metric names are those of scripts/sdturbo_ops/emf.py, and the alarm's budget is the client's deadline."""

from __future__ import annotations

import re

from sdturbo_ops import emf
from tests.support.helpers import REPO

INFRA = REPO / "infra"


def hcl_local(text: str, name: str) -> str:
    match = re.search(rf"^\s+{name}\s+=\s+(.+)$", text, re.MULTILINE)
    assert match, f"local {name} not found"
    return match.group(1).strip()


def test_the_dashboard_reads_the_namespace_dimensions_and_names_the_container_writes():
    dashboard = (INFRA / "dashboard.tf").read_text()
    assert hcl_local(dashboard, "emf_namespace") == f'"{emf.NAMESPACE}"'
    names = re.findall(r'"(\w+)"', dashboard.split("emf_metric_names = [", 1)[1].split("]", 1)[0])
    assert names and set(names) <= emf.METRIC_NAMES, set(names) - emf.METRIC_NAMES
    environment = dashboard.split("metrics_environment = {", 1)[1].split("}", 1)[0]
    assert set(re.findall(r"^\s+(SDSERVE_\w+)\s+=", environment, re.MULTILINE)) == set(emf.DIMENSION_ENV.values())
    order = re.findall(r'"(Endpoint|Model|InstanceType)", (?:local|var)\.', dashboard)
    assert order == list(emf.DIMENSION_ENV)  # the dimension set, in the order the records declare it


def test_the_cold_start_alarm_reads_a_metric_the_container_writes_at_the_clients_deadline():
    import importlib.util

    spec = importlib.util.spec_from_file_location("invoke", REPO / "scripts" / "invoke.py")
    invoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(invoke)
    alarm = (INFRA / "cold_start.tf").read_text()
    assert re.search(r'metric_name\s+=\s+"(\w+)"', alarm).group(1) in emf.METRIC_NAMES
    deadline = invoke.build_parser().parse_args(["result", "x"]).timeout
    assert int(hcl_local(alarm, "cold_start_budget_s")) == deadline == 1200
