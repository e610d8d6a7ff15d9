"""Command-line flags: their spellings, their parsers, and the parameters they stand for.

The authors' scripts spell flags with underscores (``--per_samples_list``); shells and
newer tools prefer dashes. :func:`add` registers both spellings of every flag.

Library functions name their parameters in errors (``percentages``); :data:`FLAG_OF`
maps each parameter to the flag a command-line user typed (``--per_samples_list``), and
:func:`error_message` renders an error in the user's terms. This is the one place
where the two vocabularies meet.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from bal.errors import BalError, ParameterError

#: Parameter name (as library errors name it) -> the flag that sets it.
FLAG_OF = {
    "addendum": "--addendum",
    "algorithm": "--kmeans",
    "batch_size": "--batch_size",
    "beta": "--beta",
    "budget": "--budget",
    "device": "--device",
    "epochs": "--epochs",
    "first": "--first",
    "holdout": "--holdout",
    "image_format": "--format",
    "image_size": "--image_size",
    "lr": "--lr",
    "milestones": "--milestones",
    "rotation_batch_size": "--rotation_batch_size",
    "rotation_epochs": "--rotation_epochs",
    "rotation_lr": "--rotation_lr",
    "rotation_milestones": "--rotation_milestones",
    "mode": "--window",
    "momentum": "--momentum",
    "n_clusters": "--clusters",
    "net": "--net",
    "percentages": "--per_samples_list",
    "regime": "--regime",
    "source": "--from",
    "test_fraction": "--test_fraction",
    "sampling": "--sampling",
    "seed": "--seed",
    "sorted_path": "--sorted_dataset_path",
    "strategy": "--strategy",
    "weight_decay": "--weight_decay",
    "window": "--window",
    "view": "--view",
    "feature_norm": "--feature_norm",
    "features": "--features",
    "backbone": "--backbone",
    "weights": "--weights",
    "order_from": "--order_from",
}


def error_message(error: BalError) -> str:
    """The message of ``error`` with parameter names replaced by the flags that set them."""
    if isinstance(error, ParameterError) and error.param in FLAG_OF:
        return error.named(FLAG_OF[error.param])
    return str(error)


def add(parser, *names: str, **kwargs) -> None:
    """``add_argument`` that accepts every long flag with underscores and with dashes."""
    spellings: list[str] = []
    for name in names:
        variants = [name]
        if name.startswith("--"):
            body = name[2:]
            variants += ["--" + body.replace("_", "-"), "--" + body.replace("-", "_")]
        for spelling in variants:
            if spelling not in spellings:
                spellings.append(spelling)
    parser.add_argument(*spellings, **kwargs)


def number_list(kind):
    """A flag value like ``10,5,5`` or ``10 5 5`` (with nargs='+') as a list."""

    def parse(text: str):
        try:
            return [kind(x) for x in text.replace(",", " ").split()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__} values separated by commas, got {text!r}")

    parse.__name__ = f"{kind.__name__} list"
    return parse


def add_warm_start(group, default: bool | None) -> None:
    """--warm-start / --reinit (dest ``warm_start``); ``default`` None leaves it to a configuration file."""
    note = " (default)" if default is True else ""
    group.add_argument("--warm-start", "--warm_start", dest="warm_start", action="store_true", default=default,
                       help="start each cycle from the previous cycle's weights, fresh optimizer" + note)
    group.add_argument("--reinit", dest="warm_start", action="store_false",
                       help="start each cycle from a new random initialisation")


def milestone(text: str) -> float:
    """An lr milestone: a whole epoch (``30`` -> int 30) or a fraction of the epochs (``0.5``)."""
    value = float(text)
    return int(value) if value >= 1 and value == int(value) else value


def flatten(values: list | None) -> list | None:
    """The chunks of an ``nargs='+'`` list flag as one list (None stays None)."""
    return None if values is None else [x for chunk in values for x in chunk]


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def count(text: str) -> int:
    """A whole number >= 0 (a size where 0 means none)."""
    return _whole_number(text, 0)


def fraction(zero: bool):
    """A flag type for a fraction below 1: from 0 (``zero``, where 0 means none) or above 0."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
        if not (0 <= value < 1 if zero else 0 < value < 1):
            raise argparse.ArgumentTypeError(f"expected a fraction {'at least' if zero else 'above'} 0 and below 1, "
                                             f"got {value}")
        return value

    return parse


def strategy_spec(text: str) -> str:
    """A strategy spec, ``NAME`` or ``NAME[option=value,...]``, checked against the registered strategies."""
    from bal.selection import check_spec

    try:
        return check_spec(text)
    except ParameterError as e:
        raise argparse.ArgumentTypeError(e.named("strategy"))


def embedding(text: str) -> str:
    """An embedding's name (bal.embedding.EMBEDDING_FORMS); nothing is loaded yet."""
    from bal.embedding import check_embedding

    try:
        return check_embedding(text)
    except ParameterError as e:
        raise argparse.ArgumentTypeError(e.named("embedding"))


def add_network_flags(group) -> None:
    """The flags of a pretrained network, beside --embedding wherever it is taken (kmeans, train, run, bench,
    query, fit): its weights file, its input side, and leave to download."""
    add(group, "--weights", default=None, metavar="FILE",
        help="the pretrained network's weights, a file you have (timm:NAME also finds timm's cache)")
    add(group, "--embedding_size", "--backbone_size", dest="embedding_size", type=image_side, default=None,
        help="side the images are resized to for the pretrained network (default: the model's own)")
    add(group, "--download", action="store_true", default=None,
        help="let timm download weights it has no copy of (never otherwise)")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not math.isfinite(value) or not value > 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {value}")
    return value


def seed(text: str) -> int:
    """A seed: a whole number from 0 to 2**32 - 1 (what NumPy and scikit-learn accept)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {2**32 - 1}, got {value}")
    return value


def addendum(text: str) -> int | str:
    """--addendum: images (a whole number), or a rule: budget (the per-cycle size) or even (N // cycles)."""
    from bal.selection.strategies import ADDENDUM_RULES

    if text in ADDENDUM_RULES:
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a whole number of images or one of "
                                         f"{', '.join(ADDENDUM_RULES)}, got {text!r}") from None


def image_side(text: str) -> int:
    """An image side in pixels, 8 to 1024 (bal.data.open.MAX_IMAGE_SIZE)."""
    value = positive_int(text)
    if not 8 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"expected a side from 8 to 1024 pixels, got {value}")
    return value


def output_folder(path: str | os.PathLike, flag: str) -> Path:
    """``path`` as a folder bal can write into (created if missing); else a BalError naming ``flag``."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise BalError(f"{flag} {folder} is a file, not a folder; give a folder for the results")
    for parent in folder.parents:
        if parent.exists() and not parent.is_dir():
            raise BalError(f"{flag} {folder}: {parent} is a file, so no folder can be made under it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BalError(f"{flag} {folder}: cannot create this folder ({e.strerror or e})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BalError(f"{flag} {folder} is not writable; give a folder you can write into")
    return folder


def input_folder(path: str | os.PathLike, flag: str, hint: str = "") -> Path:
    """``path`` as an existing folder; else a BalError naming ``flag`` (and ``hint``: what makes it)."""
    folder = Path(path)
    if not folder.exists():
        raise BalError(f"{flag} {folder} does not exist" + (f"; {hint}" if hint else ""))
    if not folder.is_dir():
        raise BalError(f"{flag} {folder} is a file, not a folder")
    return folder
