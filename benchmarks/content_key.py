#!/usr/bin/env python
"""What keying the image cache on the files' content costs: hashing every file against decoding it.

The decoded-image cache is keyed by a SHA-256 of every file's bytes (a file replaced by another of
the same size and modification time must not train on its old pixels). A cache hit reads and hashes
every file once; a miss hashes them and decodes them. This measures both on the same files, in one
process, one after the other:

* ``--cifar DIR``: a folder of small JPEGs in class folders (CIFAR-10's 50,000 training images in the
  authors' layout: ``DATAPATH/cifar10/train``), decoded at 32 px;
* ``--photos N``: N photos of 12 megapixels made here (as ``benchmarks/scale.py`` makes them),
  decoded at 64 px.

The page cache is warm for the hash (the files were just written or read): on a cold disk both
figures grow by the time to read the bytes. Prints a table and, with ``--json``, writes it.

    python benchmarks/content_key.py --cifar data/cifar10/train --photos 1000 --json content-key.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # measure this checkout's bal
sys.path.insert(0, str(REPO / "benchmarks"))
# ruff: noqa: E402
from bal.data import scan_split
from bal.data.cache import load_split
from bal.files import file_digests


def measure(split_dir: Path, size: int, label: str) -> dict:
    split = scan_split(split_dir)
    n_bytes = sum(os.path.getsize(p) for p in split.paths)
    file_digests(split.paths)  # warm the page cache, as a second run finds it
    t0 = time.perf_counter()
    file_digests(split.paths)
    hashed = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        load_split(split, size, cache_dir=cache, progress=False)  # a miss: hash + decode + write
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_split(split, size, cache_dir=cache, progress=False)  # a hit: hash + open the memory map
        hit = time.perf_counter() - t0
    row = {"set": label, "images": len(split.paths), "megabytes": round(n_bytes / 1e6, 1), "size": size,
           "hash_seconds": round(hashed, 2), "miss_seconds": round(built, 2), "hit_seconds": round(hit, 2),
           "hash_share_of_miss": round(hashed / built, 3)}
    print(f"{label}: {row['images']} files, {row['megabytes']} MB: hash {hashed:.2f} s, cache miss (hash + decode) "
          f"{built:.2f} s, cache hit {hit:.2f} s; hashing is {100 * hashed / built:.1f} % of a miss", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar", type=Path, default=None, help="a split folder of class folders of small JPEGs")
    parser.add_argument("--photos", type=int, default=0, help="how many 12-megapixel photos to make and measure")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    rows = []
    if args.cifar is not None:
        rows.append(measure(args.cifar, 32, f"{args.cifar}"))
    if args.photos:
        from scale import write_photos

        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "photos"
            write_photos(folder / "all", args.photos)
            rows.append(measure(folder, 64, f"{args.photos} photos of 12 megapixels"))
    report = {"command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
              "python": platform.python_version(), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
