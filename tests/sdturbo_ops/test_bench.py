"""The benchmark runs end to end on CPU with the tiny model (a smoke test: no timing is asserted)."""

from __future__ import annotations

import json
import subprocess

import pytest
from PIL import Image

from tests.support.helpers import PYTHON, REPO

pytestmark = pytest.mark.integration


def test_bench_writes_every_section(tmp_path, tiny_sd_dir):
    result = subprocess.run(
        [PYTHON, str(REPO / "scripts" / "bench.py"), "--model-dir", str(tiny_sd_dir), "--out", str(tmp_path),
         "--concurrency", "1,2", "--requests", "4", "--engine-batches", "1,2", "--engine-iterations", "1",
         "--handler-setting", "device=cpu"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [row["batch"] for row in report["engine"]] == [1, 2]
    assert [row["batch"] for row in report["engine_img2img"]] == [1, 2]
    assert all(row["images_per_s"] > 0 for row in report["engine_img2img"])
    (img2img,) = report["served_img2img"]  # one row, at the highest concurrency
    assert (img2img["system"], img2img["concurrency"], img2img["errors"]) == ("torchserve-img2img", 2, 0)
    assert img2img["images_per_s"] > 0
    assert set(report["startup_s"]) == {"no-archive", "zip-store"}
    for fmt, phases in report["startup_phases_s"].items():  # from the handler's logged timestamps
        assert set(phases) == {"frontend_to_worker_process", "python_imports", "model_load", "warm_up",
                               "ready_report"}, phases
        assert phases["model_load"] > 0 and phases["warm_up"] > 0
        assert sum(phases.values()) == pytest.approx(report["startup_s"][fmt], abs=0.1)
    for system in ("served", "baseline"):
        rows = report[system]
        assert [row["concurrency"] for row in rows] == [1, 2]
        assert all(row["errors"] == 0 and row["images_per_s"] > 0 and row["p50_ms"] for row in rows), rows
    assert report["command"].startswith("scripts/bench.py")
    assert Image.open(tmp_path / "bench.png").format == "PNG"


def test_the_plot_names_the_model_and_device_and_its_axes_start_at_zero():
    """A reader of bench.png alone must know what was measured, and read differences as ratios."""
    from sdturbo_ops.bench import figure

    row = {"system": "torchserve", "concurrency": 8, "images_per_s": 40.0, "p50_ms": 180.0}
    result = {"served": [row, {**row, "concurrency": 32, "images_per_s": 52.0, "p50_ms": 560.0}],
              "baseline": [{**row, "system": "fastapi-baseline", "images_per_s": 9.0, "p50_ms": 900.0}],
              "engine": [{"images_per_s": 60.0}], "device_name": "NVIDIA H200", "model_dir": "/tmp/sd-turbo-full"}
    fig = figure(result)
    title = fig._suptitle.get_text()
    assert "sd-turbo-full" in title and "NVIDIA H200" in title
    assert [axis.get_ylim()[0] for axis in fig.axes] == [0, 0]


def test_the_startup_phases_wait_for_the_workers_stamps_to_reach_the_log():
    """READY comes from the worker's state file; its log line a moment later (TorchServe relays it)."""
    from types import SimpleNamespace

    from sdturbo_ops.bench import startup_phases

    line = 'MODEL_LOG - startup timings {"process_started": 101.0, "initialize": 103.0, "loaded": 106.0, "warm": 110.0}'
    reads = iter(["", "", line])
    server = SimpleNamespace(launched_at=100.0, log_text=lambda: next(reads, line))
    assert startup_phases(server, 10.5) == {"frontend_to_worker_process": 1.0, "python_imports": 2.0,
                                            "model_load": 3.0, "warm_up": 4.0, "ready_report": 0.5}


def test_a_memory_proof_fails_on_a_dead_worker_a_wrong_507_another_status_or_too_little_headroom():
    from sdturbo_ops.bench import memory_proof_failed

    kept = {"workers_unchanged": True, "refused_507_that_fit_alone": 0, "statuses": {"200": 90, "507": 6},
            "fits_with_headroom": True}
    assert not memory_proof_failed(kept)
    assert not memory_proof_failed({**kept, "fits_with_headroom": None})  # no nvidia-smi: memory not read
    for broken in ({"workers_unchanged": False}, {"refused_507_that_fit_alone": 1}, {"statuses": {"200": 1, "500": 1}},
                   {"fits_with_headroom": False}):
        assert memory_proof_failed({**kept, **broken}), broken


def test_the_memory_proof_runs_a_profile_as_the_endpoint_sizes_it(tmp_path, tiny_sd_dir):
    """bench.py --memory-profile: the profile's workers and settings, the worst mix (a CPU reads no GPU
    memory, so only the answers and the workers are held here)."""
    result = subprocess.run(
        [PYTHON, str(REPO / "scripts" / "bench.py"), "--model-dir", str(tiny_sd_dir), "--out", str(tmp_path),
         "--skip", "engine", "--skip", "torchserve", "--skip", "baseline", "--memory-profile", "sd-turbo",
         "--memory-cap-requests", "8", "--handler-setting", "device=cpu"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    proof = json.loads((tmp_path / "bench.json").read_text())["memory_profile"]
    assert (proof["profile"], proof["workers"], proof["statuses"]) == ("sd-turbo", 2, {"200": 8})
    assert proof["handler_settings"]["max_gpu_memory_gib"] == 6.5 and proof["handler_settings"]["cuda_graphs"] is False
    assert proof["workers_unchanged"] and proof["gpu_memory_mib"] == 15360
