"""The ``bal`` command: the authors' three steps, their flags, and a few of our own.

    bal rotation --dataset cifar10 --datapath DATA --save checkpoint      # step 1
    bal kmeans   --dataset cifar10 --datapath DATA --load checkpoint      # step 2
    bal train    --dataset cifar10 --datapath DATA --sorted_dataset_path checkpoint/unlabeled_pool.txt
    bal run      ... (all three)          bal demo   (digits, BAL against random)
    bal bench    (strategies over seeds)  bal project/query/serve/...  (label your own images)

One module per command group: :mod:`.steps`, :mod:`.bench`, :mod:`.project`,
:mod:`.serve`, :mod:`.cache`; flag spellings and the parameter-to-flag names in :mod:`.flags`. Every
``--flag_with_underscores`` of the authors also works as ``--flag-with-dashes``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from bal.cli.flags import error_message, flatten  # noqa: F401  (flatten: used by the tests' parsers)
from bal.errors import BalError

log = logging.getLogger("bal")

#: command -> handler(args) -> exit status; filled by build_parser
COMMANDS: dict = {}

#: Commands that run in one process only.
SINGLE_PROCESS = ("bench", "demo", "kmeans")


def build_parser() -> argparse.ArgumentParser:
    from bal.cli.bench import add_bench_commands
    from bal.cli.cache import add_cache_commands
    from bal.cli.project import add_project_commands
    from bal.cli.serve import add_serve_command
    from bal.cli.steps import add_step_commands

    parser = argparse.ArgumentParser(
        prog="bal",
        description="BAL: Balancing Active Learning (Li et al., TPAMI 2023) and PT4AL, on images.",
        epilog="Start with `bal demo`. Each step writes into its folder and resumes when run again.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (add_step_commands, add_bench_commands, add_serve_command, add_project_commands, add_cache_commands):
        COMMANDS.update(add(sub))
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bal")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    from bal.engine import runtime

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bal: %(message)s", stream=sys.stderr)
    where = ""
    try:
        if runtime.launched_by_torchrun() and args.command in SINGLE_PROCESS:
            raise BalError(f"`bal {args.command}` runs in one process; start it without torchrun")
        if getattr(args, "device", None) is not None and args.command != "bench":
            args.device = runtime.resolve_device(args.device)  # fail on a bad --device before any work
            if runtime.launched_by_torchrun():
                info, args.device = runtime.setup(args.device)
                where = f" (rank {info.rank} of {info.world_size})"
                if not info.is_main:
                    logging.getLogger("bal").setLevel(logging.WARNING)
        return COMMANDS[args.command](args)
    except BalError as e:
        print(f"bal: error{where}: {error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bal: interrupted; run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    except Exception as e:
        if not runtime.launched_by_torchrun():
            raise
        # torchrun stops the other ranks when this one exits non-zero
        print(f"bal: rank {os.environ.get('RANK', '?')} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        runtime.shutdown()


if __name__ == "__main__":
    sys.exit(main())
