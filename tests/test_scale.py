"""benchmarks/scale.py --quick runs end to end: decode comparison, a pool through every stage, a photo project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scale.py"


def test_quick_run_reports_every_stage(tmp_path):
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "quick" and report["machine"]["cpu_count"] >= 1
    decode = report["decode"]
    assert decode["bal_photos_per_s"] > 0 and decode["plain_photos_per_s"] > 0 and decode["ratio"] > 1
    (pool,) = report["pools"]
    assert pool["n"] == 2000 and pool["cache"]["images"] == 2000 and pool["cdd"]["rows"] == 2000
    assert pool["score"]["images_per_s"] > 0 and 0 < pool["peak_bytes"] < 4 * 2**30
    assert {s["strategy"] for s in pool["select"]} >= {"random", "margin", "coreset", "badge", "typiclust", "bal"}
    assert all(s["k"] == 20 for s in pool["select"] if "k" in s)
    wide = report["wide_cdd"]
    assert (wide["rows"], wide["dims"]) == (2000, 512) and wide["seconds"] > 0
    photos = report["photos"]
    assert photos["init"]["peak_bytes"] > 0 and photos["query"]["peak_bytes"] > 0
    assert "peak memory" in proc.stdout and "CDD" in proc.stdout
