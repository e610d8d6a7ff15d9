"""The paper's data sets in the authors' folder layout, from the official archives.

``prepare("cifar10", out)`` writes ``out/cifar10/{train,test}/CLASS/NNNNN.png``, the layout every
bal command reads (``--datapath out --dataset cifar10``), from the archive the user has:

============  ===============================================  ==========================================
name          official file (``source``)                        train / test
============  ===============================================  ==========================================
cifar10       ``cifar-10-python.tar.gz``                        the archive's data_batch_1..5 / test_batch
cifar100      ``cifar-100-python.tar.gz``                       train / test, the 100 fine classes
svhn          ``train_32x32.mat`` and ``test_32x32.mat``        the two files (give either, or their
              (a folder holding both, or either file)           folder); label 10 is the digit 0
caltech101    ``101_ObjectCategories.tar.gz`` (or the           a seeded, stratified split: in each class
              ``caltech-101.zip`` that holds it)                ``round(test_fraction * n)`` images (at
                                                                least 1) are test; BACKGROUND_Google is
                                                                left out, as torchvision does
tinyimagenet  ``tiny-imagenet-200.zip``                         train / the validation images, labelled
                                                                by ``val/val_annotations.txt``
============  ===============================================  ==========================================

Images that the archive stores as pixel arrays (CIFAR, SVHN) are written as PNG, losslessly
(``image_format="jpg"`` writes JPEG at quality 95 instead); images it stores as files (Caltech-101,
Tiny ImageNet) are copied byte for byte. Nothing in an archive is executed: CIFAR's pickles are
read by an unpickler that rebuilds only dicts, lists, strings, numbers and NumPy arrays.

Resumable: each image is written atomically and an image already there is not written again;
``prepared.json`` is written last, so a folder without it is not finished, and the same call
finishes it. With ``download=True`` (never in tests) torchvision's own downloaders fetch the
official archive into ``out/.downloads`` first; Tiny ImageNet has none.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bal.errors import BalError, ParameterError
from bal.files import atomic_write_bytes, atomic_write_json, read_json
from bal.validation import check_choice, check_int, check_real

__all__ = ["PREPARERS", "PrepareReport", "prepare_dataset"]

#: One image to write: (split, class name, file stem, pixels (H, W, 3) uint8 or encoded bytes, extension of the bytes)
Item = tuple[str, str, str, "np.ndarray | bytes", str]


@dataclass
class PrepareReport:
    name: str
    folder: Path
    written: int = 0
    kept: int = 0  # already there from an earlier, interrupted call
    counts: dict[str, int] = field(default_factory=dict)  # split -> images
    classes: int = 0
    already: bool = False  # the folder was finished before this call


# -- reading the official archives -------------------------------------------------------------
class _DataUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, strings, numbers and NumPy arrays, and nothing else (no code runs)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a data file never needs")
        return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _DataUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # UnpicklingError, EOFError, ValueError ...
        raise BalError(f"{where} is not a CIFAR data batch ({e})") from None
    if not isinstance(obj, dict):
        raise BalError(f"{where} is not a CIFAR data batch (a {type(obj).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _damaged(source: Path, what: str, e: BaseException) -> BalError:
    return BalError(f"{source} is truncated, damaged or not {what} ({type(e).__name__}: {str(e)[:160]}); "
                    f"download it again")


def _tar_members(source: Path, what: str, wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """The bytes of every member of a tar archive (gzip or not) whose name ``wanted`` accepts."""
    out = {}
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                if member.isfile() and wanted(member.name):
                    f = tar.extractfile(member)
                    out[member.name] = f.read() if f is not None else b""
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise _damaged(source, what, e) from None
    return out


def _cifar(source: Path, fine: bool) -> Iterator[Item]:
    what = "the official CIFAR-100 python archive" if fine else "the official CIFAR-10 python archive"
    top = "cifar-100-python" if fine else "cifar-10-batches-py"
    splits = {"train": ["train"], "test": ["test"]} if fine else {
        "train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    meta_name = "meta" if fine else "batches.meta"
    members = _tar_members(source, what, lambda n: n.startswith(top + "/"))
    need = [f"{top}/{n}" for n in [meta_name, *splits["train"], *splits["test"]]]
    missing = [n for n in need if n not in members]
    if missing:
        raise BalError(f"{source} is not {what}: it does not hold {', '.join(missing)}")
    meta = _unpickle(members[f"{top}/{meta_name}"], f"{source}:{meta_name}")
    names = meta.get("fine_label_names" if fine else "label_names")
    if not isinstance(names, list) or not names:
        raise BalError(f"{source}:{meta_name} holds no class names")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    label_key = "fine_labels" if fine else "labels"
    for split, batches in splits.items():
        index = 0
        for batch in batches:
            d = _unpickle(members[f"{top}/{batch}"], f"{source}:{batch}")
            data, labels = d.get("data"), d.get(label_key)
            if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 or labels is None \
                    or len(labels) != len(data):
                raise BalError(f"{source}:{batch} is not a CIFAR data batch (no data of shape (N, 3072) with "
                               f"{label_key})")
            pixels = data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            for img, label in zip(pixels, labels):
                if not 0 <= int(label) < len(classes):
                    raise BalError(f"{source}:{batch}: label {label} is not one of the {len(classes)} classes")
                yield split, classes[int(label)], f"{index:05d}", np.ascontiguousarray(img), ""
                index += 1


def _svhn_files(source: Path) -> dict[str, Path]:
    folder = source if source.is_dir() else source.parent
    files = {split: folder / f"{split}_32x32.mat" for split in ("train", "test")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise BalError(f"SVHN needs train_32x32.mat and test_32x32.mat side by side; missing {', '.join(missing)}")
    return files


def _svhn(source: Path) -> Iterator[Item]:
    from scipy.io import loadmat

    for split, path in _svhn_files(source).items():
        try:
            mat = loadmat(path)
        except Exception as e:  # scipy raises ValueError, TypeError, MatReadError ... on a damaged file
            raise _damaged(path, "an official SVHN .mat file", e) from None
        x, y = mat.get("X"), mat.get("y")
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y is None \
                or y.size != x.shape[3]:
            raise BalError(f"{path} is not an SVHN file: no X of shape (32, 32, 3, N) with y of N labels")
        labels = np.asarray(y).reshape(-1).astype(np.int64) % 10  # the files label the digit 0 as 10
        for i in range(x.shape[3]):
            yield split, str(int(labels[i])), f"{i:05d}", np.ascontiguousarray(x[:, :, :, i]), ""


def _caltech_archive(source: Path) -> tuple[Path | None, bytes | None]:
    """The inner ``101_ObjectCategories.tar.gz`` of ``caltech-101.zip``, or the file itself."""
    if not zipfile.is_zipfile(source):
        return source, None
    try:
        with zipfile.ZipFile(source) as z:
            inner = [n for n in z.namelist() if n.endswith("101_ObjectCategories.tar.gz")]
            if not inner:
                raise BalError(f"{source} does not hold 101_ObjectCategories.tar.gz")
            return None, z.read(inner[0])
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise _damaged(source, "the official Caltech-101 archive", e) from None


def _caltech101(source: Path, seed: int, test_fraction: float) -> Iterator[Item]:
    what = "the official Caltech-101 archive (101_ObjectCategories.tar.gz)"
    path, inner = _caltech_archive(source)
    by_class: dict[str, dict[str, bytes]] = {}
    try:
        tar = tarfile.open(path, "r:*") if inner is None else tarfile.open(fileobj=io.BytesIO(inner), mode="r:*")
        with tar:
            for member in tar:
                parts = member.name.split("/")
                if member.isfile() and len(parts) == 3 and parts[0] == "101_ObjectCategories" \
                        and parts[1] != "BACKGROUND_Google" and parts[2].lower().endswith((".jpg", ".jpeg")):
                    f = tar.extractfile(member)
                    by_class.setdefault(parts[1], {})[parts[2]] = f.read() if f is not None else b""
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise _damaged(source, what, e) from None
    if len(by_class) < 2:
        raise BalError(f"{source} is not {what}: it holds {len(by_class)} class folder(s) under 101_ObjectCategories/")
    for k, name in enumerate(sorted(by_class)):
        files = sorted(by_class[name])
        # a seeded, stratified split: each class its own permutation, from the seed and the class's position
        order = np.random.default_rng([seed, k]).permutation(len(files))
        n_test = min(len(files) - 1, max(1, int(round(test_fraction * len(files))))) if len(files) > 1 else 0
        test = set(order[:n_test].tolist())
        for i, fname in enumerate(files):
            stem = Path(fname).stem
            yield ("test" if i in test else "train"), name, stem, by_class[name][fname], ".jpg"


def _tinyimagenet(source: Path) -> Iterator[Item]:
    what = "the official Tiny ImageNet archive (tiny-imagenet-200.zip)"
    try:
        with zipfile.ZipFile(source) as z:
            names = set(z.namelist())
            top = "tiny-imagenet-200/"
            if top + "wnids.txt" not in names or top + "val/val_annotations.txt" not in names:
                raise BalError(f"{source} is not {what}: no {top}wnids.txt or {top}val/val_annotations.txt")
            wnids = [w.strip() for w in z.read(top + "wnids.txt").decode().splitlines() if w.strip()]
            known = set(wnids)
            for n in sorted(names):
                parts = n.split("/")
                if len(parts) == 5 and parts[1] == "train" and parts[3] == "images" and parts[2] in known \
                        and parts[4].upper().endswith(".JPEG"):
                    yield "train", parts[2], Path(parts[4]).stem, z.read(n), ".jpg"
            for line in z.read(top + "val/val_annotations.txt").decode().splitlines():
                cols = line.split("\t")
                if len(cols) < 2:
                    continue
                if cols[1] not in known:
                    raise BalError(f"{source}: val_annotations.txt gives {cols[0]} the class {cols[1]}, not in "
                                   f"wnids.txt")
                yield "test", cols[1], Path(cols[0]).stem, z.read(top + "val/images/" + cols[0]), ".jpg"
    except BalError:
        raise
    except (zipfile.BadZipFile, KeyError, EOFError, zlib.error, OSError, UnicodeDecodeError) as e:
        raise _damaged(source, what, e) from None


#: name -> (what the user gives, the reader, torchvision's downloader or None)
PREPARERS: dict[str, tuple[str, Callable[..., Iterator[Item]], str | None]] = {
    "cifar10": ("cifar-10-python.tar.gz", lambda s, **_: _cifar(s, fine=False), "CIFAR10"),
    "cifar100": ("cifar-100-python.tar.gz", lambda s, **_: _cifar(s, fine=True), "CIFAR100"),
    "svhn": ("train_32x32.mat and test_32x32.mat (their folder, or either file)", lambda s, **_: _svhn(s), "SVHN"),
    "caltech101": ("101_ObjectCategories.tar.gz or caltech-101.zip",
                   lambda s, seed, test_fraction: _caltech101(s, seed, test_fraction), "Caltech101"),
    "tinyimagenet": ("tiny-imagenet-200.zip", lambda s, **_: _tinyimagenet(s), None),
}


def _download(name: str, out: Path) -> Path:
    """The official archive fetched by torchvision's own downloader into ``out/.downloads/NAME``."""
    cls_name = PREPARERS[name][2]
    if cls_name is None:
        raise BalError(f"torchvision has no downloader for {name}; get {PREPARERS[name][0]} from the data set's "
                       f"site and give it with --from")
    import torchvision.datasets as tvd

    root = out / ".downloads" / name
    root.mkdir(parents=True, exist_ok=True)
    cls = getattr(tvd, cls_name)
    try:
        if name == "svhn":
            for split in ("train", "test"):
                cls(str(root), split=split, download=True)
            return root
        cls(str(root), download=True)
    except Exception as e:  # no network, a moved URL, a quota
        raise BalError(f"torchvision could not download {name} ({type(e).__name__}: {str(e)[:160]}); download "
                       f"{PREPARERS[name][0]} yourself and give it with --from") from None
    found = sorted(root.rglob({"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz",
                               "caltech101": "101_ObjectCategories.tar.gz"}[name]))
    if not found:
        raise BalError(f"torchvision's download of {name} left no {PREPARERS[name][0]} under {root}")
    return found[0]


def _encode(pixels: np.ndarray, image_format: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if image_format == "png":
        Image.fromarray(pixels).save(buf, format="PNG")
    else:
        Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def prepare_dataset(name: str, out: str | os.PathLike, source: str | os.PathLike | None = None, *,
                    download: bool = False, image_format: str = "png", seed: int = 0,
                    test_fraction: float = 0.2, progress: bool = False) -> PrepareReport:
    """Write data set ``name`` into ``out/NAME/{train,test}/CLASS/`` from ``source`` (see the module docstring).

    Raises
    ------
    ParameterError
        An unknown ``name``, ``image_format``, a ``test_fraction`` outside (0, 1), or neither
        ``source`` nor ``download``.
    BalError
        A missing, truncated, damaged or foreign archive (named), or an output folder that
        was prepared from other settings.
    """
    name = check_choice("name", name, list(PREPARERS))
    image_format = check_choice("image_format", image_format, ["png", "jpg"])
    seed = check_int("seed", seed, 0)
    test_fraction = check_real("test_fraction", test_fraction, low=0, low_open=True, high=1, high_open=True)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BalError(f"--out {out} is a file; give the folder that is to hold {name}/")
    folder = out / name
    settings = {"name": name, "image_format": image_format, "layout": "NAME/{train,test}/CLASS/*"}
    if name == "caltech101":
        settings.update(seed=seed, test_fraction=test_fraction)
    marker = folder / "prepared.json"
    if marker.is_file():
        done = read_json(marker)
        if {k: done.get(k) for k in settings} != settings:
            raise BalError(f"{folder} was prepared with other settings ({done.get('image_format')}, seed "
                           f"{done.get('seed')}); use another --out, or delete {folder} to prepare it again")
        return PrepareReport(name, folder, counts=done.get("counts", {}), classes=done.get("classes", 0), already=True)
    if source is None and not download:
        raise ParameterError("source", f"{{name}}: give the official {PREPARERS[name][0]} with --from FILE, or "
                                       f"--download to fetch it with torchvision (where this machine may)")
    if source is not None:
        source = Path(source)
        if not source.exists():
            raise BalError(f"--from {source}: no such file")
    else:
        source = _download(name, out)
    report = PrepareReport(name, folder)
    classes: set[str] = set()
    reader = PREPARERS[name][1](source, seed=seed, test_fraction=test_fraction)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=f"prepare {name}", unit="image", leave=False)
    for split, cls, stem, payload, ext in reader:
        if "/" in cls or cls in ("", ".", ".."):
            raise BalError(f"{source}: the class name {cls!r} cannot be a folder name")
        ext = ext or f".{image_format}"
        target = folder / split / cls / f"{stem}{ext}"
        classes.add(cls)
        report.counts[split] = report.counts.get(split, 0) + 1
        if target.exists():
            report.kept += 1
        else:
            atomic_write_bytes(target, payload if isinstance(payload, bytes) else _encode(payload, image_format))
            report.written += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    report.classes = len(classes)
    if not report.counts.get("train") or not report.counts.get("test"):
        raise BalError(f"{source} gave no {'train' if not report.counts.get('train') else 'test'} images")
    atomic_write_json(marker, {**settings, "counts": report.counts, "classes": report.classes,
                               "source": str(source)})
    return report
