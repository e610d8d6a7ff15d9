"""``bal cache list|prune``: the decoded-image caches (bal.data.cache) and the disk they take."""

from __future__ import annotations

import time
from pathlib import Path

from bal.cli.flags import add, positive_float


def add_cache_commands(sub) -> dict:
    p = sub.add_parser("cache", help="list or prune decoded-image caches",
                       description="Decoded images are cached once per split and size (a memory-mapped .npy and a "
                                   ".json), under $BAL_CACHE_DIR (default ~/.cache/bal), labelling projects' "
                                   "pools included. A changed folder gets a new cache; the old one stays "
                                   "until pruned.")
    actions = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="every cache: images, size, disk, age, source folder")
    prune = actions.add_parser("prune", help="delete caches (unfinished ones, stale ones, old ones, or all)")
    for q in (ls, prune):
        add(q, "--cache_dir", default=None, help="the cache folder (default: $BAL_CACHE_DIR or ~/.cache/bal)")
    add(prune, "--older_than", type=positive_float, default=None, metavar="DAYS",
        help="caches not used (modified) for more than DAYS days")
    add(prune, "--partial", action="store_true", help="builds that never finished")
    add(prune, "--missing_source", action="store_true", help="caches whose source folder no longer exists")
    add(prune, "--all", action="store_true", help="every cache")
    add(prune, "--dry_run", action="store_true", help="only say what would be deleted")
    return {"cache": cmd_cache}


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def cmd_cache(args) -> int:
    from bal.data.cache import default_cache_dir, list_caches
    from bal.errors import BalError

    folder = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    entries = list_caches(folder)
    if args.cache_command == "list":
        if not entries:
            print(f"no caches in {folder}")
            return 0
        print(f"caches in {folder}:")
        print(f"  {'key':<12}  {'state':<8}  {'images':>8}  {'size':>5}  {'disk':>10}  {'modified':<16}  source")
        for e in entries:
            print(f"  {e.key[:12]:<12}  {'partial' if e.partial else 'ready':<8}  {e.images or '-':>8}  "
                  f"{e.image_size or '-':>5}  {_size(e.bytes):>10}  "
                  f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(e.modified)):<16}  {e.root or '-'}")
        print(f"  {len(entries)} cache(s), {_size(sum(e.bytes for e in entries))} in all")
        return 0
    if not (args.all or args.partial or args.missing_source or args.older_than):
        raise BalError("say which caches to prune: --partial, --missing_source, --older_than DAYS or --all")
    now = time.time()
    chosen = [e for e in entries if args.all
              or (args.partial and e.partial)
              or (args.missing_source and e.root and not Path(e.root).exists())
              or (args.older_than and now - e.modified > args.older_than * 86400)]
    freed = sum(e.bytes for e in chosen)
    for e in chosen:
        if not args.dry_run:
            for f in e.files:
                f.unlink(missing_ok=True)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(chosen)} of {len(entries)} cache(s) in {folder}: {_size(freed)}")
    return 0
