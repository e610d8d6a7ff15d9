#!/usr/bin/env python
"""Throughput and memory of bal on the machine it runs on, against the limits, in one run.

Every ratio compares the same model (``--net``, fresh weights from seed 0, channels-last as in
bal's engine) at the same batch size on both sides. Timing: one warm-up, then the median of
``--repeats`` runs (time.perf_counter), the two sides of a ratio (and the phases of a cycle)
taking turns; torch's default thread count (reported).

1. training  bal's ``train_model`` (gather + on-device augmentation + SGD step, one epoch) against a
             bare loop over ready-made tensors (pre-augmented float, channels-last; only forward,
             backward, step; same optimizer): images/s, ratio bal/bare, target >= 0.9.
2. scoring   bal's ``predict`` on a pool plus the confidence from its logits (as a cycle scores its
             window) against bare inference over ready-made tensors: images/s, target >= 0.9.
3. cdd       ``cluster_distance_difference`` (k-means + exact distances) on 50,000 x 512 float32
             features from 10 Gaussian blobs (seed 0): scikit-learn "kmeans" and "minibatch", faiss
             when installed, and the distance step alone; seconds, target <= 10 s for "kmeans".
4. cache     ``load_split`` of CIFAR-10's 50,000 training JPEGs: first decode (into an empty cache
             folder each run) and cached load; seconds and images/s; the folder scan apart.
5. cycle     cycle 1 of 10 on a stratified pool of 10,000 CIFAR-10 images, 1,000 labelled: select
             1,000 (build_subpool + predict + select_uncertain on the window of beta*A = 1,200),
             train 1 epoch on the 2,000 labels (per-epoch checkpoint, as the cycles), evaluate on
             the 10,000 test images; seconds per phase, selection's share, and that share if
             training ran 30 or 100 epochs (train time x epochs).
6. authors   the authors' scoring (batch 1; per image PIL decode, ToTensor, Normalize; NCHW model in
             eval mode) against bal's ``predict`` over the cached uint8 images: same 5,000 images.
7. memory    peak RSS (ru_maxrss of RUSAGE_CHILDREN, read in a small launcher process) of
             ``python -m bal train --net NET --dataset cifar10 --datapath DATA --per_samples_list 1
             --epochs 1 --strategy random --save TMP --cache_dir CACHE --no_progress`` with an empty
             cache (it decodes), again with the cache filled, and on 600 generated images (the part
             that does not grow with the data); minus the peak RSS of ``python -c "import torch,
             sklearn, bal.cli"``. Target: increase < 2 x decoded images (train + test uint8) +
             training state (parameters, gradients, momentum buffers).

Data: ``--data DIR`` (holding ``cifar10/{train,test}``), else ``../shared/data/cifar10.tar.gz``
next to the repository, extracted into a temporary folder; without either, sections 4-7 are
skipped and 1-2 use random pixels. ``--quick`` runs the same code on a generated folder (10
classes x 30 32x32 JPEGs per split), 2,000 x 64 CDD features and a few hundred images; its
figures only show that everything runs.

    python benchmarks/throughput.py --json throughput.json          # full size, several minutes
    python benchmarks/throughput.py --quick --json /tmp/quick.json  # smoke run, under a minute
    python benchmarks/throughput.py --data data --net cnn --batch-size 128
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # measure this checkout's bal
# ruff: noqa: E402
import numpy as np
import sklearn
import torch
import torch.nn.functional as F
from PIL import Image

from bal.data import augment_for, get_preset, load_split, scan_split, stratified_subset
from bal.engine.runtime import autocast, resolve_device, scoring_batch_size, to_device
from bal.engine.trainer import TrainConfig, batch_indices, evaluate, predict, prepare, train_model
from bal.files import atomic_write_json
from bal.models import create_model
from bal.report import format_table
from bal.selection import (
    build_subpool,
    cluster_distance_difference,
    kmeans_distances,
    select_uncertain,
    subpool_window,
    uncertainty_scores,
)
from bal.selection.cdd import _euclidean_distances  # private: times the distance step alone

ARCHIVE = REPO.parent / "shared" / "data" / "cifar10.tar.gz"
PRESET = get_preset("cifar10").resolve(np.zeros((1, 32, 32, 3), np.uint8))
N_CLASSES, PER_CLASS = 10, 30  # generated folder: 10 classes x 30 JPEGs per split


@dataclass(frozen=True)
class Sizes:
    train_images: int  # 1: images in the timed epoch
    score_images: int  # 2: images scored
    cdd_rows: int  # 3
    cdd_dims: int
    cycle_pool: int  # 5: pool, and images labelled per cycle (k = A)
    cycle_k: int
    authors_images: int  # 6
    cdd_clusters: int = 10
    cycles: int = 10
    beta: float = 1.2  # cifar10's base-regime beta


FULL = Sizes(6400, 10_000, 50_000, 512, 10_000, 1_000, 5_000)
QUICK = Sizes(256, 512, 2_000, 64, 200, 20, 100)


def timed(fns, repeats: int, device: torch.device, warmups=None):
    """Median seconds of each callable in ``fns`` (or of the one callable ``fns``).

    Each is called once to warm up (its ``warmups`` entry instead, when given), then all are timed
    in ``repeats`` interleaved rounds, so that a change of the machine's load hits them alike.
    """
    single = callable(fns)
    fns = [fns] if single else list(fns)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for warmup in warmups or fns:
        warmup()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            spent.append(time.perf_counter() - t0)
    medians = [statistics.median(t) for t in times]
    return medians[0] if single else medians


def new_model(net: str, device: torch.device):
    torch.manual_seed(0)
    return to_device(create_model(net, num_classes=N_CLASSES, image_size=32), device)


def compare(bal_fn, bare_fn, n: int, batch_size: int, args, device) -> dict:
    bal_s, bare_s = timed([bal_fn, bare_fn], args.repeats, device)
    return {"images": n, "batch_size": batch_size, "bal_seconds": bal_s, "bare_seconds": bare_s,
            "bal_images_per_s": n / bal_s, "bare_images_per_s": n / bare_s, "ratio": bare_s / bal_s,
            "target": ">= 0.9", "met": bare_s / bal_s >= 0.9}


# -- 1. training -----------------------------------------------------------------------
def measure_training(images, labels, n, args, device) -> dict:
    idx = np.arange(n) % len(images)
    config, augment = TrainConfig(epochs=1, batch_size=args.batch_size), augment_for(PRESET)
    bal_model, bare_model = new_model(args.net, device), new_model(args.net, device)

    def bal_epoch():
        train_model(bal_model, images, labels, idx, config, augment, device=device, seed=0, progress=False)

    gen = torch.Generator().manual_seed(0)
    ready = [(prepare(augment, images[torch.from_numpy(b)].to(device), True, gen), labels[torch.from_numpy(b)].to(device))
             for b in batch_indices(idx, args.batch_size, gen)]
    opt = torch.optim.SGD(bare_model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)

    def bare_epoch():
        bare_model.train()
        for x, y in ready:
            with autocast(device):
                loss = F.cross_entropy(bare_model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return compare(bal_epoch, bare_epoch, n, args.batch_size, args, device)


# -- 2. scoring ------------------------------------------------------------------------
def measure_scoring(images, n, args, device) -> dict:
    idx, augment, model = np.arange(n) % len(images), augment_for(PRESET), new_model(args.net, device)

    def bal_score():  # what a cycle does with its window: logits, then the confidence rule
        uncertainty_scores(predict(model, images, idx, augment, device=device, batch_size=args.score_batch_size),
                           "confidence")

    ready = [prepare(augment, images[torch.from_numpy(b)].to(device), False)
             for b in batch_indices(idx, args.score_batch_size, None)]

    @torch.inference_mode()
    def bare_score():
        model.eval()
        with autocast(device):
            torch.cat([model(x) for x in ready])

    return compare(bal_score, bare_score, n, args.score_batch_size, args, device)


# -- 3. CDD ----------------------------------------------------------------------------
def blob_features(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """``n`` float32 rows: unit Gaussian noise around ``k`` centres drawn with std 2 per dimension."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    x += rng.normal(0.0, 2.0, (k, d)).astype(np.float32)[rng.integers(0, k, n)]
    return x


def measure_cdd(sizes: Sizes, args, device) -> dict:
    x, k = blob_features(sizes.cdd_rows, sizes.cdd_dims, sizes.cdd_clusters), sizes.cdd_clusters
    out: dict = {"rows": sizes.cdd_rows, "dims": sizes.cdd_dims, "clusters": k, "target": "kmeans <= 10 s"}
    for algorithm in ("kmeans", "minibatch", "faiss"):
        if algorithm == "faiss":
            try:
                import faiss  # noqa: F401
            except ImportError:
                out["faiss_seconds"] = "not installed"
                continue
        out[f"{algorithm}_seconds"] = timed(
            lambda: cluster_distance_difference(x, k, seed=0, algorithm=algorithm), args.repeats, device)
    centres, _ = kmeans_distances(x, k, seed=0)
    out["distances_seconds"] = timed(lambda: _euclidean_distances(x, centres), args.repeats, device)
    out["met"] = out["kmeans_seconds"] <= 10.0
    return out


# -- 4. image cache --------------------------------------------------------------------
def measure_cache(root: Path, args, device, tmp: Path) -> tuple[dict, object, object]:
    t0 = time.perf_counter()
    split = scan_split(root / "cifar10" / "train")
    scan_s = time.perf_counter() - t0
    fresh, cache = tmp / "cache-fresh", tmp / "cache"

    def first_decode():  # every run decodes into an empty cache folder
        shutil.rmtree(fresh, ignore_errors=True)
        load_split(split, 32, fresh, progress=False)

    decode_s = timed(first_decode, args.repeats, device)
    shutil.rmtree(fresh, ignore_errors=True)
    train = load_split(split, 32, cache, progress=False)
    cached_s = timed(lambda: load_split(split, 32, cache, progress=False), args.repeats, device)
    test = load_split(scan_split(root / "cifar10" / "test"), 32, cache, progress=False)
    n = len(train)
    return ({"images": n, "scan_seconds": scan_s, "first_decode_seconds": decode_s,
             "first_decode_images_per_s": n / decode_s, "cached_load_seconds": cached_s,
             "cached_load_images_per_s": n / cached_s, "decoded_bytes": int(train.images.nbytes)}, train, test)


# -- 5. one cycle ----------------------------------------------------------------------
def measure_cycle(train_set, test_set, sizes: Sizes, args, device, tmp: Path) -> dict:
    pool = stratified_subset(train_set, sizes.cycle_pool, seed=0)
    n, k, augment = len(pool), sizes.cycle_k, augment_for(PRESET)
    images, labels = torch.from_numpy(pool.images), torch.from_numpy(pool.labels)
    order = np.random.default_rng(0).permutation(n)  # stands in for the CDD order
    labelled = np.zeros(n, dtype=bool)
    labelled[order[:k]] = True  # what cycle 0 labelled: the first A images of its window
    model, picked, ckpt = new_model(args.net, device), {}, tmp / "cycle-ckpt.pth"

    def select():
        sub = build_subpool(order, subpool_window(1, sizes.cycles, n, k, sizes.beta), labelled, k)
        logits, _ = predict(model, images, sub.candidates, augment, device=device, features=True)
        picked["idx"] = sub.candidates[select_uncertain(logits, k, "confidence", np.random.default_rng(1))]
        picked["candidates"] = len(sub.candidates)

    def train():
        ckpt.unlink(missing_ok=True)  # a checkpoint left over would make train_model resume, i.e. skip
        train_model(model, images, labels, np.concatenate([order[:k], picked["idx"]]),
                    TrainConfig(epochs=1, batch_size=args.batch_size), augment, device=device, seed=0,
                    stream=("cycle", 1), checkpoint=ckpt, progress=False)

    def evaluate_test():
        evaluate(model, torch.from_numpy(test_set.images), test_set.labels, augment, N_CLASSES, device=device)

    phases = dict(zip(("select", "train", "evaluate"), timed([select, train, evaluate_test], args.repeats, device)))
    total = sum(phases.values())
    out = {"pool": n, "labelled_before": k, "selected": k, "candidates": picked["candidates"],
           "trained_on": 2 * k, "epochs": 1, "test_images": len(test_set), "cycle_seconds": total,
           **{f"{p}_seconds": s for p, s in phases.items()}, "select_share_pct": 100.0 * phases["select"] / total}
    for epochs in (30, 100):
        whole = phases["select"] + epochs * phases["train"] + phases["evaluate"]
        out[f"select_share_pct_at_{epochs}_epochs"] = 100.0 * phases["select"] / whole
    return out


# -- 6. the authors' scoring -----------------------------------------------------------
def measure_authors(train_set, n, args, device) -> dict:
    idx = np.sort(np.random.default_rng(0).choice(len(train_set), n, replace=False))
    paths, images = [train_set.paths[i] for i in idx], torch.from_numpy(train_set.images)
    augment, model = augment_for(PRESET), new_model(args.net, device)
    theirs = copy.deepcopy(model).to(memory_format=torch.contiguous_format).eval()  # their code: plain NCHW
    mean, std = torch.tensor(PRESET.mean).view(3, 1, 1), torch.tensor(PRESET.std).view(3, 1, 1)

    @torch.no_grad()
    def authors(some=paths):
        scores = []
        for p in some:
            with open(p, "rb") as f:  # torchvision ImageFolder's pil_loader
                img = Image.open(f).convert("RGB")
            x = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).contiguous().float().div(255)  # ToTensor
            x = x.sub_(mean).div_(std)  # Normalize
            scores.append(float(F.softmax(theirs(x.unsqueeze(0).to(device)), dim=1).max()))
        return scores

    def bal_score():
        uncertainty_scores(predict(model, images, idx, augment, device=device, batch_size=args.score_batch_size),
                           "confidence")

    authors_s, bal_s = timed([authors, bal_score], args.repeats, device,
                             warmups=[lambda: authors(paths[: max(1, n // 20)]), bal_score])
    return {"images": n, "authors_seconds": authors_s, "bal_seconds": bal_s,
            "authors_images_per_s": n / authors_s, "bal_images_per_s": n / bal_s, "speedup": authors_s / bal_s}


# -- 7. memory -------------------------------------------------------------------------
# A child's ru_maxrss starts from its parent's peak RSS (fork, and Linux keeps it across exec),
# so commands are started from this small launcher, never from the benchmark process itself.
LAUNCHER = """import resource, subprocess, sys
with open(sys.argv[1], "wb") as log:
    code = subprocess.call(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss(cmd: list[str], log: Path) -> int:
    """Run ``cmd`` from a fresh launcher; its peak resident memory in bytes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", LAUNCHER, str(log), *cmd], env=env, capture_output=True,
                         text=True, check=True)
    code, maxrss = map(int, out.stdout.split())
    if code != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {code}): {log.read_text()[-2000:]}")
    return maxrss * (1 if sys.platform == "darwin" else 1024)  # ru_maxrss: bytes on macOS, kB on Linux


def measure_memory(root: Path, args, tmp: Path) -> dict:
    baseline = peak_rss([sys.executable, "-c", "import torch, sklearn, bal.cli"], tmp / "baseline.log")
    n_images = sum(len(scan_split(root / "cifar10" / s)) for s in ("train", "test"))
    decoded = n_images * 32 * 32 * 3
    state = 3 * sum(p.numel() * p.element_size() for p in create_model(args.net, N_CLASSES, 32).parameters())
    limit = 2 * decoded + state
    out = {"pool_and_test_images": n_images, "baseline_rss_bytes": baseline, "decoded_bytes": decoded,
           "training_state_bytes": state, "limit_increase_bytes": limit,
           "target": "increase < 2 x decoded + training state"}
    tiny = root if args.quick else make_tiny_folder(tmp / "tiny")
    for run, datapath, cache in (("cold", root, "mem-cache"), ("warm", root, "mem-cache"), ("tiny", tiny, "tiny-cache")):
        cmd = [sys.executable, "-m", "bal", "train", "--net", args.net, "--dataset", "cifar10", "--datapath",
               str(datapath), "--per_samples_list", "1", "--epochs", "1", "--strategy", "random", "--batch_size",
               str(args.batch_size), "--device", args.device, "--save", str(tmp / f"mem-{run}"), "--cache_dir",
               str(tmp / cache), "--no_progress"]
        t0 = time.perf_counter()
        peak = peak_rss(cmd, tmp / f"mem-{run}.log")
        out.update({f"{run}_command": shlex.join(cmd), f"{run}_seconds": time.perf_counter() - t0,
                    f"{run}_peak_rss_bytes": peak, f"{run}_increase_bytes": peak - baseline})
    out["met"] = max(out["cold_increase_bytes"], out["warm_increase_bytes"]) < limit
    return out


# -- data, table, main -----------------------------------------------------------------
def make_tiny_folder(dest: Path) -> Path:
    """``dest/cifar10/{train,test}/classC/NNNN.jpg``: 10 classes x 30 generated 32x32 JPEGs per split."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(N_CLASSES):
            folder = dest / "cifar10" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(PER_CLASS):  # a colour per class, plus noise
                pixels = rng.normal(25.0 * c, 40.0, (32, 32, 3)).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.jpg", quality=90)
    return dest


def find_data(args, tmp: Path) -> tuple[Path | None, str]:
    """The folder holding ``cifar10/{train,test}`` and where it came from, or None and why."""
    if args.quick:
        return make_tiny_folder(tmp / "data"), f"generated: {N_CLASSES} classes x {PER_CLASS} 32x32 JPEGs per split"
    if args.data:
        root = Path(args.data)
        if (root / "cifar10" / "train").is_dir():
            return root, f"--data {root}"
        return None, f"--data {root} holds no cifar10/train folder"
    if ARCHIVE.is_file():
        (tmp / "data").mkdir()
        subprocess.run(["tar", "-xzf", str(ARCHIVE), "-C", str(tmp / "data")], check=True)
        return tmp / "data", f"extracted {ARCHIVE}"
    return None, f"no CIFAR-10: {ARCHIVE} is missing and --data was not given"


ROWS = {  # section -> (label, key, unit) per table line
    "training": [("bal train_model", "bal_images_per_s", "img/s"),
                 ("bare loop, ready tensors", "bare_images_per_s", "img/s"), ("ratio bal/bare", "ratio", "x")],
    "scoring": [("bal predict + confidence", "bal_images_per_s", "img/s"),
                ("bare inference, ready tensors", "bare_images_per_s", "img/s"), ("ratio bal/bare", "ratio", "x")],
    "cdd": [("sklearn kmeans + distances", "kmeans_seconds", "s"),
            ("sklearn minibatch + distances", "minibatch_seconds", "s"), ("faiss + distances", "faiss_seconds", "s"),
            ("of which exact distances", "distances_seconds", "s")],
    "cache": [("folder scan", "scan_seconds", "s"), ("first decode", "first_decode_seconds", "s"),
              ("first decode", "first_decode_images_per_s", "img/s"), ("cached load", "cached_load_seconds", "s"),
              ("cached load", "cached_load_images_per_s", "img/s")],
    "cycle": [("select", "select_seconds", "s"), ("train (1 epoch)", "train_seconds", "s"),
              ("evaluate", "evaluate_seconds", "s"), ("whole cycle", "cycle_seconds", "s"),
              ("selection share", "select_share_pct", "%"),
              ("share if 30 epochs", "select_share_pct_at_30_epochs", "%"),
              ("share if 100 epochs", "select_share_pct_at_100_epochs", "%")],
    "authors": [("authors: batch 1, PIL per image", "authors_images_per_s", "img/s"),
                ("bal predict, cached uint8", "bal_images_per_s", "img/s"), ("speed-up", "speedup", "x")],
    "memory": [("baseline: import torch, sklearn, bal.cli", "baseline_rss_bytes", "MiB"),
               ("peak, cold cache", "cold_peak_rss_bytes", "MiB"), ("increase, cold cache", "cold_increase_bytes", "MiB"),
               ("peak, warm cache", "warm_peak_rss_bytes", "MiB"), ("increase, warm cache", "warm_increase_bytes", "MiB"),
               ("increase on 600 images (fixed part)", "tiny_increase_bytes", "MiB"),
               ("decoded images (train + test)", "decoded_bytes", "MiB"), ("training state", "training_state_bytes", "MiB"),
               ("limit on the increase", "limit_increase_bytes", "MiB")],
}
TARGET_ROW = {"training": "ratio", "scoring": "ratio", "cdd": "kmeans_seconds", "memory": "limit_increase_bytes"}
FORMATS = {"img/s": "{:,.0f}", "s": "{:.3f}", "x": "{:.2f}", "%": "{:.1f}"}


def show(value, unit: str) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    return f"{value / 2**20:,.1f}" if unit == "MiB" else FORMATS[unit].format(value)


def table(sections: dict) -> str:
    rows = []
    for name, result in sections.items():
        if "skipped" in result:
            rows.append({"section": name, "what": "skipped (see below)"})
            continue
        for label, key, unit in ROWS[name]:
            row = {"section": name, "what": label, "value": show(result.get(key, "-"), unit), "unit": unit}
            if TARGET_ROW.get(name) == key:
                row.update(target=result["target"], met="yes" if result["met"] else "NO")
            rows.append(row)
    width = max(len(r.get("value", "")) for r in rows)
    for r in rows:  # right-align the pre-formatted numbers
        if "value" in r:
            r["value"] = r["value"].rjust(width)
    return format_table(rows, [("section", "section", ""), ("what", "measurement", ""), ("value", "value", ""),
                               ("unit", "unit", ""), ("target", "target", ""), ("met", "met", "")])


def describe(s: dict) -> str:
    """The sizes behind the table, in words."""
    text = (f"training: {s['training']['images']:,} images per epoch, batch {s['training']['batch_size']}; "
            f"scoring: {s['scoring']['images']:,} images, batch {s['scoring']['batch_size']}; "
            f"cdd: {s['cdd']['rows']:,} x {s['cdd']['dims']} float32, K = {s['cdd']['clusters']}")
    if "skipped" not in s["cycle"]:
        c = s["cycle"]
        text += (f"\ncache: {s['cache']['images']:,} training images; cycle: pool {c['pool']:,}, "
                 f"{c['labelled_before']:,} labelled, {c['selected']:,} selected from {c['candidates']:,} "
                 f"window candidates, 1 epoch on {c['trained_on']:,}, {c['test_images']:,} test images; "
                 f"authors: {s['authors']['images']:,} images; memory: {s['memory']['pool_and_test_images']:,} "
                 f"images (pool + test)")
    return text


def run_all(args, sizes: Sizes, device, tmp: Path) -> tuple[dict, str]:
    root, source = find_data(args, tmp)
    print(f"data: {source}", flush=True)
    sections: dict[str, dict] = {}

    def run(name, fn, *a):
        print(f"{name} ...", flush=True)
        t0 = time.perf_counter()
        result = fn(*a)
        sections[name] = result[0] if isinstance(result, tuple) else result
        sections[name]["section_seconds"] = time.perf_counter() - t0
        return result

    if root is not None:
        _, train_set, test_set = run("cache", measure_cache, root, args, device, tmp)
        images, labels = torch.from_numpy(train_set.images), torch.from_numpy(train_set.labels)
    else:  # throughput does not depend on the pixels
        rng = np.random.default_rng(0)
        images = torch.from_numpy(rng.integers(0, 256, (sizes.score_images, 32, 32, 3), dtype=np.uint8))
        labels = torch.from_numpy(rng.integers(0, N_CLASSES, sizes.score_images))
    run("training", measure_training, images, labels, sizes.train_images, args, device)
    run("scoring", measure_scoring, images, sizes.score_images, args, device)
    run("cdd", measure_cdd, sizes, args, device)
    if root is None:
        sections.update({name: {"skipped": source} for name in ("cache", "cycle", "authors", "memory")})
    else:
        run("cycle", measure_cycle, train_set, test_set, sizes, args, device, tmp)
        run("authors", measure_authors, train_set, sizes.authors_images, args, device)
        run("memory", measure_memory, root, args, tmp)
    order = ["training", "scoring", "cdd", "cache", "cycle", "authors", "memory"]
    return {k: sections[k] for k in order}, source


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--quick", action="store_true", help="tiny generated inputs, same code paths (under a minute)")
    p.add_argument("--data", default=None, help="folder holding cifar10/{train,test} (default: extract the shared archive)")
    p.add_argument("--net", default="cnn", help="network of every measurement (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size, both sides (default: %(default)s)")
    p.add_argument("--score-batch-size", type=int, default=None,
                   help="scoring batch size, both sides (default: bal's, scoring_batch_size of the device: "
                        "128 on the CPU, 512 on CUDA)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs after the warm-up, the median is kept (default: 3; 2 with --quick)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: %(default)s)")
    p.add_argument("--json", default=None, help="write the machine, the command line and every figure here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 3)
    device, sizes = resolve_device(args.device), QUICK if args.quick else FULL
    args.score_batch_size = args.score_batch_size or scoring_batch_size(device)
    started, load_before = time.time(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bal-throughput-") as name:
        sections, source = run_all(args, sizes, device, Path(name))
    machine = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "numpy": np.__version__, "sklearn": sklearn.__version__, "python": platform.python_version(),
               "platform": platform.platform(), "device": str(device),
               "load_average_before": load_before, "load_average_after": os.getloadavg()}
    print(f"\n{machine['platform']}, {machine['cpu_count']} CPUs, torch {machine['torch']} "
          f"({machine['torch_threads']} threads), device {device}, net {args.net}, median of {args.repeats} "
          f"after a warm-up, load average {load_before[0]:.1f} at start")
    print(describe(sections))
    if args.quick:
        print("--quick: tiny inputs only check that everything runs; the figures say nothing about the targets")
    print("\n" + table(sections))
    if any("skipped" in r for r in sections.values()):
        print(f"\nskipped: {source}")
    if args.json:
        atomic_write_json(args.json, {
            "command": shlex.join([sys.executable, *sys.argv]), "mode": "quick" if args.quick else "full",
            "machine": machine, "settings": {**vars(args), "sizes": asdict(sizes), "data": source},
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": time.time() - started, "sections": sections})
        print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
