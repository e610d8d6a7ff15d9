"""benchmarks/throughput.py --quick runs end to end and reports every section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"

# section -> figures that must be positive numbers
FIGURES = {
    "training": ["bal_images_per_s", "bare_images_per_s", "ratio"],
    "scoring": ["bal_images_per_s", "bare_images_per_s", "ratio"],
    "cdd": ["kmeans_seconds", "minibatch_seconds", "distances_seconds"],
    "cache": ["first_decode_seconds", "first_decode_images_per_s", "cached_load_seconds", "cached_load_images_per_s"],
    "cycle": ["select_seconds", "train_seconds", "evaluate_seconds", "cycle_seconds", "select_share_pct"],
    "authors": ["authors_images_per_s", "bal_images_per_s", "speedup"],
    "memory": ["baseline_rss_bytes", "cold_peak_rss_bytes", "warm_peak_rss_bytes", "tiny_peak_rss_bytes",
               "decoded_bytes", "training_state_bytes", "limit_increase_bytes"],
}


def test_quick_run_reports_every_section(tmp_path):
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())

    assert report["mode"] == "quick"
    assert "--quick" in report["command"]
    machine = report["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch_threads"] >= 1
    assert machine["torch"] and machine["platform"] and machine["device"]

    sections = report["sections"]
    assert set(sections) == set(FIGURES)
    for name, keys in FIGURES.items():
        assert "skipped" not in sections[name], f"{name}: {sections[name]}"
        for key in keys:
            value = sections[name][key]
            assert isinstance(value, (int, float)) and value > 0, f"{name}.{key} = {value!r}"
    faiss = sections["cdd"]["faiss_seconds"]
    assert faiss == "not installed" or faiss > 0
    for name in ("training", "scoring", "cdd", "memory"):  # the targets are stated and checked
        assert sections[name]["target"] and isinstance(sections[name]["met"], bool)

    table = proc.stdout[proc.stdout.index("section "):]  # the table starts at its header
    lines = table.splitlines()
    for name in FIGURES:
        assert any(line.startswith(name + " ") for line in lines), f"the table has no {name} line"
