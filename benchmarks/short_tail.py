"""Which bench configurations trained on a short last batch before batches folded their tail.

Until batches folded a short remainder into the one before (``bal.engine.trainer.batch_indices``),
every epoch of a labelled set of ``k * batch + t`` images ended with a ``t``-image SGD step. This
prints, for each configuration file given, every cycle's labelled-set size, its tail ``t`` at the
configuration's batch, and the pretext's tail over the pool, and flags tails under a quarter of
a batch (the ones that mattered: 2 of 64 cost 5.8 AUBC points on a 3,000-image GTSRB pool).

    python benchmarks/short_tail.py benchmarks/*.yaml benchmarks/ablation/*.yaml

Reads only the files; trains nothing.
"""

from __future__ import annotations

import argparse
import sys

from bal.bench import BenchConfig
from bal.data import budgets_from_percentages


def tails(config: BenchConfig, pool_size: int) -> list[tuple[int, int]]:
    """(labelled images, tail at the batch) of each cycle."""
    out, total = [], 0
    for k in budgets_from_percentages(config.percentages_used, pool_size):
        total += k
        out.append((total, total % config.batch_size))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", help="bench configuration files (YAML)")
    parser.add_argument("--pool-size", type=int, default=None,
                        help="pool size for a configuration that gives none (its whole training split)")
    args = parser.parse_args(argv)
    flagged = 0
    for path in args.configs:
        config = BenchConfig.from_yaml(path)
        pool = config.pool_size or args.pool_size
        if pool is None:
            print(f"{path}: no pool_size (the whole training split); give --pool-size to check it")
            continue
        quarter = config.batch_size / 4
        cycles = tails(config, pool)
        short = [f"{n} labels (tail {t})" for n, t in cycles if 0 < t < quarter]
        pretext_tail = pool % config.rotation_batch_size
        pre_short = 0 < pretext_tail < config.rotation_batch_size / 4
        flagged += bool(short) + pre_short
        sizes = ", ".join(f"{n}:{t}" for n, t in cycles)
        print(f"{path}: batch {config.batch_size}, labelled:tail {sizes}")
        print(f"    short tails (< {quarter:g}): {'; '.join(short) if short else 'none'}; pretext over {pool} images "
              f"at batch {config.rotation_batch_size}: tail {pretext_tail}{' (short)' if pre_short else ''}")
    print(f"{flagged} short tail(s) in {len(args.configs)} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
