"""The ``bal`` command: the authors' three steps, their flags, and a few of our own.

    bal rotation --dataset cifar10 --datapath DATA --save checkpoint      # step 1
    bal kmeans   --dataset cifar10 --datapath DATA --load checkpoint      # step 2
    bal train    --dataset cifar10 --datapath DATA --sorted_dataset_path checkpoint/unlabeled_pool.txt
    bal run      ... (all three)          bal demo   (digits, BAL, the recommendation, random)
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


#: command -> the group of commands that defines it (the module under bal.cli that adds its parser).
COMMAND_GROUPS = {
    "rotation": "steps", "kmeans": "steps", "train": "steps", "run": "steps",
    "bench": "bench", "demo": "bench", "serve": "serve", "cache": "cache", "data": "data",
    "project": "project", "query": "project", "export": "project", "import": "project", "undo": "project",
    "fit": "project", "predict": "project", "status": "project",
}


def _adders() -> dict:
    from bal.cli.bench import add_bench_commands
    from bal.cli.cache import add_cache_commands
    from bal.cli.data import add_data_commands
    from bal.cli.project import add_project_commands
    from bal.cli.serve import add_serve_command
    from bal.cli.steps import add_step_commands

    return {"steps": add_step_commands, "bench": add_bench_commands, "serve": add_serve_command,
            "project": add_project_commands, "cache": add_cache_commands, "data": add_data_commands}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """bal's parser: every command, or (``command``) only what that one needs.

    Building one command's parser imports only what its flags need, so ``bal status``,
    ``bal export`` or ``bal --version`` start without torch: a machine too short of
    memory to load torch can still read its projects.
    """
    parser = argparse.ArgumentParser(
        prog="bal",
        description="BAL: Balancing Active Learning (Li et al., TPAMI 2023) and PT4AL, on images.",
        epilog="Start with `bal demo`. Each step writes into its folder and resumes when run again.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if command == "--version":
        return parser
    adders = _adders()
    if command in COMMAND_GROUPS:
        group = COMMAND_GROUPS[command]
        COMMANDS.update(adders[group](sub, only=command) if group == "project" else adders[group](sub))
        return parser
    for add in adders.values():
        COMMANDS.update(add(sub))
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (its first word that is not a flag); ``--version`` before any; else None."""
    for word in argv:
        if word == "--version":
            return word
        if not word.startswith("-"):
            return word if word in COMMAND_GROUPS else None
    return None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bal")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # Ctrl-C while torch loads (a second or more) is an interruption, not a traceback
        args = build_parser(_command_of(argv)).parse_args(argv)
    except KeyboardInterrupt:
        print("bal: interrupted", file=sys.stderr)
        return 130
    except (ImportError, OSError, MemoryError) as e:
        print(f"bal: error: {import_error_message(e)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="bal: %(message)s", stream=sys.stderr)
    where = ""
    finished = False
    try:
        if args.command in SINGLE_PROCESS and _runtime().launched_by_torchrun():
            raise BalError(f"`bal {args.command}` runs in one process; start it without torchrun")
        if getattr(args, "device", None) is not None and args.command != "bench":
            runtime = _runtime()  # a command with --device trains or scores: it needs torch anyway
            args.device = runtime.resolve_device(args.device)  # fail on a bad --device before any work
            if runtime.launched_by_torchrun():
                info, args.device = runtime.setup(args.device)
                where = f" (rank {info.rank} of {info.world_size})"
                if not info.is_main:
                    logging.getLogger("bal").setLevel(logging.WARNING)
        status = COMMANDS[args.command](args)
        finished = True
        return status
    except BalError as e:
        print(f"bal: error{where}: {error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bal: interrupted; run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`bal export DIR | head`): stop quietly, as `cat` does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except ImportError as e:  # torch (or a library under it) failing to load when a command first needs it
        print(f"bal: error{where}: {import_error_message(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # the disk, the file system, permissions: the user's to fix, not a bug
        print(f"bal: error{where}: {os_error_message(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"bal: error{where}: out of memory; lower --batch_size or --image_size", file=sys.stderr)
        return 2
    except Exception as e:
        if _is_out_of_memory(e):
            print(f"bal: error{where}: out of memory ({str(e).splitlines()[0][:160]}); lower --batch_size or "
                  f"--image_size", file=sys.stderr)
            return 2
        if _torchrun():
            # torchrun stops the other ranks when this one exits non-zero
            print(f"bal: rank {os.environ.get('RANK', '?')} failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        log_file = write_bug_report(args, argv)
        first = str(e).splitlines()[0][:200] if str(e) else ""
        print(f"bal: internal error, a bug in bal ({type(e).__name__}: {first}); "
              f"the traceback is in {log_file}; please report it", file=sys.stderr)
        return 1
    finally:
        loaded = sys.modules.get("bal.engine.runtime")  # not imported: nothing to shut down
        if loaded is not None:
            loaded.shutdown(finished)


def _runtime():
    from bal.engine import runtime

    return runtime


def _torchrun() -> bool:
    loaded = sys.modules.get("bal.engine.runtime")
    return loaded is not None and loaded.launched_by_torchrun()


def import_error_message(e: BaseException) -> str:
    """A library that would not load (torch, most often), in the user's terms."""
    text = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    name = (getattr(e, "name", None) or "").split(".")[0]
    name = "torch" if "torch" in text or name in ("_C", "torch") else name or "a library bal needs"
    memory = ("failed to map segment", "cannot allocate memory", "out of memory")
    if isinstance(e, MemoryError) or any(m in text.lower() for m in memory):
        return (f"could not load {name} ({text}): the process is short of memory, as under a memory limit "
                f"(ulimit -v, a container's limit); torch needs about 2 GB of address space to load: raise the "
                f"limit, or free memory")
    return f"could not load {name} ({text}); reinstall bal's dependencies (pip install -e . or make install)"


def os_error_message(e: OSError) -> str:
    """An OSError in the user's terms: what failed, on which file; a full disk said as such."""
    import errno

    where = f" (writing {e.filename})" if e.filename else ""
    if e.errno == errno.ENOSPC:
        return (f"no space left on device{where}; free some space or choose another folder, then run the same "
                f"command again")
    if e.filename:
        return f"{e.filename}: {e.strerror or e}"
    return str(e.strerror or e)


def _is_out_of_memory(e: Exception) -> bool:
    text = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def write_bug_report(args, argv) -> "Path":  # noqa: F821 (pathlib imported inside: start-up stays light)
    """Write the current exception's traceback to a log file in the command's folder; returns its path."""
    import time
    import traceback
    from pathlib import Path

    from bal.data import default_cache_dir

    name = f"bal-error-{time.strftime('%Y%m%d-%H%M%S')}.log"
    candidates = [getattr(args, k, None) for k in ("save", "dir", "out", "load")]
    folders = [Path(c) for c in candidates if c and Path(c).is_dir()] + [default_cache_dir() / "logs"]
    text = (f"bal {_version()}\ncommand: bal {' '.join(map(str, argv if argv is not None else sys.argv[1:]))}\n\n"
            + traceback.format_exc())
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
            return folder / name
        except OSError:
            continue
    return Path("(could not be written)")


if __name__ == "__main__":
    sys.exit(main())
