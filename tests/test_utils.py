"""Atomic files and derived seeds."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from bal.engine.runtime import derive_seed
from bal.files import atomic_save_npy, atomic_write_text


def test_atomic_write_replaces_whole_file_with_ordinary_permissions(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    atomic_write_text(path, "first\n")
    atomic_write_text(path, "second\n")
    assert path.read_text() == "second\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]  # no temporary file left behind


def test_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "a.npy"
    atomic_save_npy(path, np.arange(3))
    with pytest.raises(ValueError):
        atomic_save_npy(path, np.array([object()]))  # cannot be saved without pickle
    np.testing.assert_array_equal(np.load(path), np.arange(3))
    assert len(list(tmp_path.iterdir())) == 1


def test_derived_seeds_differ_by_purpose_and_repeat():
    assert derive_seed(0, "train", 1) == derive_seed(0, "train", 1)
    assert len({derive_seed(0, "train", 1), derive_seed(0, "train", 2), derive_seed(1, "train", 1),
                derive_seed(0, "rotation", 1)}) == 4
    assert 0 <= derive_seed(123, "x") < 2**63
