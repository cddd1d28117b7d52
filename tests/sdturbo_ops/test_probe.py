"""The GPU probe (sdturbo_ops/probe.py, scripts/gpu_probe.py) on a CPU with the tiny model: the same code the
GPU runs, so a run on the lent GPU does not fail on a typo; no timing is asserted."""

from __future__ import annotations

import json
import subprocess

import pytest

from sdturbo_ops.probe import parse_variants
from tests.support.helpers import PYTHON, REPO


def test_variants_are_read_as_upsampling_mode_and_slice():
    assert parse_variants("subpixel:default:4, nearest:eager:16,") == [("subpixel", "default", 4),
                                                                      ("nearest", "eager", 16)]
    for bad in ("bilinear:eager:4", "nearest:fast:4", "nearest:eager"):
        with pytest.raises(ValueError):
            parse_variants(bad)


@pytest.mark.slow
def test_the_probe_times_decoders_profiles_the_engine_and_checks_parity_on_a_cpu(tmp_path, tiny_sd_dir):
    out = tmp_path / "probe.jsonl"
    result = subprocess.run(
        [PYTHON, str(REPO / "scripts" / "gpu_probe.py"), "--model-dir", str(tiny_sd_dir), "--out", str(out),
         "--decoder", "nearest:eager:2,subpixel:eager:4", "--batch", "4", "--side", "64", "--iterations", "1",
         "--engine-batch", "2", "--parity", "2", "--device", "cpu"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["probe"] for row in rows] == ["decoder", "decoder", "engine", "parity"]
    nearest, subpixel = rows[:2]
    assert (nearest["upsample"], subpixel["upsample"], subpixel["slice"]) == ("nearest", "subpixel", 4)
    assert subpixel["max_level_difference"] <= 1  # the same images, up to rounding
    assert rows[2]["generate"]["wall_ms"] > 0 and rows[2]["decode"]["wall_ms"] > 0
    assert rows[3]["max_level_difference"] <= 1 and len(rows[3]["per_seed"]) == 2
