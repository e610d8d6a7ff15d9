#!/usr/bin/env python
"""What the practitioner's path on a pretrained embedding costs: embed, fit a head, query, predict.

A labelling project over N images of a dataset folder (symlinks in one flat folder, so
no image counts as labelled by its folder), 20 labels a class imported as a CSV, then,
each as a command in its own process (interpreter start and imports included, as a
user meets them):

1. ``bal fit --task_model linear --embedding efficientnet_lite0 --embedding_size S``
   with an empty embedding cache: the embedding of the pool and the fit;
2. the same fit again: the embedding read from the cache (target <= 30 s);
3. ``bal query --budget 100`` with a pretrained rule scored by the head (target <= 10 s);
4. ``bal predict``: every unlabelled image's class and confidence.

    python benchmarks/pretrained_speed.py --data data --n 10000 --json speed.json

Needs the pretrained extra. The targets (embedding 10,000 images at 128 px <= 3 min,
fit <= 30 s, query <= 10 s on 2 CPU cores) are printed beside what was measured; the
load average at the start is printed too: figures taken on a busy machine are slower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TARGETS = {"embed + fit (cold)": 180.0, "fit (cached)": 30.0, "query 100 (cached)": 10.0}


def bal(*argv, env) -> float:
    """Run one bal command; its wall time in seconds (a failure stops the benchmark)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bal", *map(str, argv)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"bal {shlex.join(map(str, argv))} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="DATAPATH holding DATASET/train/CLASS/*")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--n", type=int, default=10000, help="images in the project")
    parser.add_argument("--size", type=int, default=128, help="the embedding's input side")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    train = Path(args.data) / args.dataset / "train"
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    files = sorted((c, f) for c in classes for f in sorted((train / c).iterdir()))
    step = max(1, len(files) // args.n)
    files = files[::step][: args.n]
    work = Path(tempfile.mkdtemp(prefix="bal-speed-"))
    flat = work / "photos"
    flat.mkdir()
    truth = {}
    for i, (c, f) in enumerate(files):
        name = f"{i:06d}{f.suffix}"
        (flat / name).symlink_to(f.resolve())
        truth[name] = c
    env = {**os.environ, "BAL_CACHE_DIR": str(work / "cache"), "PYTHONPATH": str(REPO / "src")}
    load = os.getloadavg()[0]
    times = {}
    times["project init"] = bal("project", "init", work / "p", "--images", flat, "--classes", ",".join(classes),
                                "--no-progress", env=env)
    per_class = {c: [n for n, k in truth.items() if k == c][:20] for c in classes}
    (work / "labels.csv").write_text("path,label\n" + "".join(f"{n},{c}\n" for c, ns in per_class.items()
                                                              for n in ns))
    times["import labels"] = bal("import", work / "p", work / "labels.csv", env=env)
    pretrained = ["--embedding", "efficientnet_lite0", "--embedding_size", args.size]
    times["embed + fit (cold)"] = bal("fit", work / "p", "--task_model", "linear", *pretrained, "--no-progress",
                                      "--device", "cpu", env=env)
    times["fit (cached)"] = bal("fit", work / "p", "--no-progress", "--device", "cpu", env=env)
    times["query 100 (cached)"] = bal("query", work / "p", "--budget", 100, "--strategy", "margin", *pretrained,
                                      "--no-progress", "--device", "cpu", env=env)
    times["predict (cached)"] = bal("predict", work / "p", "--out", work / "pred.csv", "--no-progress",
                                    "--device", "cpu", env=env)
    report = {"command": shlex.join([sys.executable, *sys.argv]), "machine": platform.platform(),
              "cpus": os.cpu_count(), "load_average_at_start": round(load, 2), "images": len(files),
              "size": args.size, "seconds": {k: round(v, 2) for k, v in times.items()}}
    print(f"{len(files)} images of {args.dataset}, Lite0 at {args.size} px, {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at the start")
    for name, seconds in times.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else f"  target <= {target:.0f} s: {'met' if seconds <= target else 'NOT met'}"
        print(f"  {name:<20} {seconds:7.1f} s{verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
