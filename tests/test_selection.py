"""Tests of bal.selection against hand-computed answers (docs/method.md steps 2-3)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from bal.errors import BalError
from bal.selection import (
    FIRST_RULES,
    SAMPLING_RULES,
    SubPool,
    build_subpool,
    cdd_from_distances,
    cluster_distance_difference,
    kmeans_distances,
    select_first,
    select_uncertain,
    sort_by_cdd,
    subpool_window,
    uncertainty_scores,
)
from bal.selection import cdd as cdd_module

# --------------------------------------------------------------------------------------
# CDD
# --------------------------------------------------------------------------------------


def test_cdd_from_distances_hand_rows():
    d = np.array(
        [
            [1.0, 3.0, 5.0],  # 3 - 1
            [5.0, 1.0, 3.0],  # same values, other columns
            [2.0, 2.0, 7.0],  # two equidistant nearest centres: on the boundary
            [1.0, 10.0, 4.0],  # 2nd nearest (4) is not the farthest (10)
            [0.0, 0.0, 0.0],
        ]
    )
    out = cdd_from_distances(d)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [2.0, 2.0, 0.0, 3.0, 0.0])


def test_cdd_from_distances_two_centres_and_int_input():
    np.testing.assert_array_equal(cdd_from_distances(np.array([[4, 9], [9, 4]])), [5.0, 5.0])


@pytest.mark.parametrize(
    "bad",
    [np.array([1.0, 2.0]), np.array([[1.0], [2.0]]), np.array([[1.0, np.nan]]),
     np.array([[1.0, -0.5]]), np.array([["a", "b"]])],
)
def test_cdd_from_distances_rejects(bad):
    with pytest.raises(BalError, match="distances"):
        cdd_from_distances(bad)


def _blob(centre, n_side=5, spread=0.1):
    """A tight square grid of points, symmetric around ``centre`` (mean exactly = centre)."""
    offsets = np.linspace(-spread, spread, n_side)
    gx, gy = np.meshgrid(offsets, offsets)
    return np.column_stack([gx.ravel(), gy.ravel()]) + np.asarray(centre, dtype=float)


def test_cdd_two_blobs_boundary_and_core():
    # 2 x 961 points around (0,0) and (10,0); 3 points on the bisector x = 5. The
    # midpoints join one cluster and pull its centre by 15/964 ~ 0.016 along x, so their
    # CDD is ~0 (< 0.05) and the CDD of the points at the blob centres is ~10.
    a = _blob((0, 0), n_side=31, spread=0.2)
    b = _blob((10, 0), n_side=31, spread=0.2)
    mid = np.array([[5.0, -1.0], [5.0, 0.0], [5.0, 1.0]])
    x = np.vstack([a, b, mid])
    cdd = cluster_distance_difference(x, 2, seed=0)
    assert cdd.shape == (x.shape[0],) and cdd.dtype == np.float64
    assert np.all(cdd >= 0)
    assert np.all(cdd[-3:] < 0.05)
    centre_rows = [int(np.argmin(np.linalg.norm(x - c, axis=1))) for c in ([0, 0], [10, 0])]
    for r in centre_rows:
        assert abs(cdd[r] - 10.0) < 0.05
    # boundary images sort first
    order = sort_by_cdd(cdd)
    assert set(order[:3].tolist()) == {x.shape[0] - 3, x.shape[0] - 2, x.shape[0] - 1}


def test_cdd_three_blobs_uses_second_nearest_not_farthest():
    # Centres (0,0), (10,0), (0,30). For the point at (0,0): d1 = 0, d2 = 10, farthest 30.
    # For (0,30): d1 = 0, d2 = 30, farthest sqrt(1000).
    x = np.vstack([_blob((0, 0)), _blob((10, 0)), _blob((0, 30))])
    centres, dist = kmeans_distances(x, 3, seed=0)
    expected_centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 30.0]])
    got = centres[np.lexsort((centres[:, 0], centres[:, 1]))]
    np.testing.assert_allclose(got, expected_centres, atol=1e-9)
    cdd = cluster_distance_difference(x, 3, seed=0)
    middle = 12  # the (0,0) offset of a 5x5 grid
    assert cdd[middle] == pytest.approx(10.0, abs=1e-9)
    assert cdd[25 + middle] == pytest.approx(10.0, abs=1e-9)
    assert cdd[50 + middle] == pytest.approx(30.0, abs=1e-9)
    np.testing.assert_array_equal(cdd, cdd_from_distances(dist))


def test_kmeans_distances_are_exact_float64_even_far_from_origin():
    # Offset 1e6 with a spread of 0.01: ||x||^2 - 2x.c + ||c||^2 loses every digit of d
    # here (even in float64); explicit differences do not.
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(0, 0.01, (40, 3)), rng.normal(0, 0.01, (40, 3)) + 5.0]) + 1e6
    centres, dist = kmeans_distances(x, 2, seed=1)
    assert dist.dtype == np.float64 and centres.dtype == np.float64
    direct = np.linalg.norm(x[:, None, :] - centres[None, :, :], axis=2)
    np.testing.assert_allclose(dist, direct, rtol=1e-12, atol=0)


def test_kmeans_distances_chunking_and_float32(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(53, 4)).astype(np.float32)
    centres, full = kmeans_distances(x, 3, seed=0)
    monkeypatch.setattr(cdd_module, "_MAX_CHUNK_ROWS", 7)
    _, chunked = kmeans_distances(x, 3, seed=0)
    np.testing.assert_array_equal(full, chunked)
    direct = np.linalg.norm(x.astype(np.float64)[:, None] - centres[None], axis=2)
    np.testing.assert_allclose(full, direct, rtol=1e-12)


def test_cdd_is_deterministic_per_seed():
    x = np.random.default_rng(7).normal(size=(300, 5))
    a = cluster_distance_difference(x, 4, seed=11)
    b = cluster_distance_difference(x, 4, seed=11)
    np.testing.assert_array_equal(a, b)
    assert np.all(a >= 0)


def test_cdd_minibatch_runs_and_agrees_on_blobs():
    x = np.vstack([_blob((0, 0)), _blob((10, 0)), _blob((0, 30))])
    cdd = cluster_distance_difference(x, 3, seed=0, algorithm="minibatch")
    assert cdd.shape == (75,) and np.all(cdd >= 0)
    assert cdd[12] == pytest.approx(10.0, abs=0.05)
    assert cdd[62] == pytest.approx(30.0, abs=0.05)


def test_faiss_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    with pytest.raises(BalError, match=r"pip install faiss-cpu.*bal\[faiss\]"):
        cluster_distance_difference(_blob((0, 0)), 2, algorithm="faiss")


@pytest.mark.parametrize(
    ("features", "kwargs", "match"),
    [
        (np.zeros(10), {}, "features"),
        (np.zeros((0, 2)), {}, "features"),
        (np.array([[0.0, np.inf], [1.0, 1.0]]), {}, "features"),
        (np.zeros((5, 2)), {"n_clusters": 1}, "n_clusters"),
        (np.zeros((5, 2)), {"n_clusters": 6}, "n_clusters"),
        (np.zeros((5, 2)), {"n_clusters": 2.5}, "n_clusters"),
        (np.zeros((5, 2)), {"algorithm": "dbscan"}, "algorithm"),
        (np.zeros((5, 2)), {"seed": -1}, "seed"),
    ],
)
def test_cluster_distance_difference_rejects(features, kwargs, match):
    kwargs = {"n_clusters": 2, **kwargs}
    with pytest.raises(BalError, match=match):
        cluster_distance_difference(features, **kwargs)


def test_sort_by_cdd_ascending_stable():
    order = sort_by_cdd(np.array([0.3, 0.1, 0.2, 0.1, 0.0]))
    assert order.dtype == np.int64
    np.testing.assert_array_equal(order, [4, 1, 3, 2, 0])
    # 100 values with massive ties: an unstable (quick)sort would scramble them.
    many = np.tile([1.0, 0.0], 50)
    np.testing.assert_array_equal(
        sort_by_cdd(many), np.r_[np.arange(1, 100, 2), np.arange(0, 100, 2)]
    )
    with pytest.raises(BalError, match="cdd"):
        sort_by_cdd(np.array([[0.1]]))
    with pytest.raises(BalError, match="cdd"):
        sort_by_cdd(np.array([0.1, np.nan]))


# --------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------

N, A, C = 50_000, 5_000, 10


def _windows(beta, mode, n=N, a=A, c=C):
    return [subpool_window(i, c, n, a, beta, mode) for i in range(c)]


def test_window_centred_beta1_tiles_pool_exactly():
    w = _windows(1.0, "centred")
    assert w == [(i * A, (i + 1) * A) for i in range(C)]
    covered = np.zeros(N, dtype=int)
    for start, stop in w:
        covered[start:stop] += 1
    assert np.all(covered == 1)


def test_window_released_beta1_skips_second_block_and_repeats_last():
    w = _windows(1.0, "released")
    assert w[0] == (0, A)
    assert w[1] == (2 * A, 3 * A)
    assert all(stop <= A or start >= 2 * A for start, stop in w)  # never visits [A, 2A)
    assert w[-2] == w[-1] == (N - A, N)


def test_window_beta_below_one_leaves_gaps():
    w = _windows(0.5, "centred")
    assert w[0] == (0, 2500)
    assert w[1] == (6250, 8750)  # [5000 + 1250, 10000 - 1250)
    assert w[4] == (21250, 23750)
    assert w[-1] == (47500, 50000)
    assert all(stop - start == 2500 for start, stop in w)
    assert all(w[i][1] < w[i + 1][0] for i in range(C - 1))  # gaps between windows
    released = _windows(0.5, "released")
    assert released[1] == (11250, 13750)
    assert released[8] == (46250, 48750)


def test_window_beta_above_one_overlaps():
    w = _windows(1.2, "centred")
    assert w[0] == (0, 6000)
    assert w[1] == (4500, 10500)
    assert w[5] == (24500, 30500)
    assert w[-1] == (44000, 50000)
    assert all(w[i][1] > w[i + 1][0] for i in range(C - 1))
    r = _windows(1.2, "released")
    assert r[1] == (9500, 15500)
    assert r[8] == (44500, 50000)  # 50500 clipped to N


def test_window_beta2_and_clipping_at_n():
    w = _windows(2.0, "centred")
    assert w[0] == (0, 10_000)
    assert w[1] == (2500, 12_500)
    assert w[-1] == (40_000, 50_000)
    assert subpool_window(8, C, N, A, 2.0, "released") == (42_500, 50_000)  # 52500 -> N


def test_window_clipping_at_zero():
    # beta = 4: cycle 1 centred starts at 5000 - 7500 = -2500 -> 0.
    assert subpool_window(1, C, N, A, 4.0, "centred") == (0, 17_500)


def test_window_single_cycle_uses_cycle0_rule():
    assert subpool_window(0, 1, N, A, 1.2) == (0, 6000)
    assert subpool_window(0, 1, 100, A, 1.2) == (0, 100)  # clipped to a tiny pool


def test_window_tiny_pools():
    assert _windows(1.0, "centred", n=3, a=1, c=3) == [(0, 1), (1, 2), (2, 3)]
    assert subpool_window(1, 2, 1, 1, 1.0) == (0, 1)  # last cycle of a 1-image pool
    # released window past the end of the pool: empty after clipping, returned as is
    assert subpool_window(2, 4, 5, 2, 1.0, "released") == (5, 5)


def test_window_rounding_half_up_same_width_first_and_last():
    # 0.58 * 25 is 14.499999999999998 in binary floating point; the rule reads beta as
    # 58/100, so the width is 14.5 -> 15.
    assert subpool_window(0, 5, 200, 25, 0.58) == (0, 15)
    assert subpool_window(4, 5, 200, 25, 0.58) == (185, 200)
    # same for a middle end: 20 - (2.45 - 1) / 2 * 20 = 5.5 exactly (5.4999... in floats)
    assert subpool_window(1, 5, 200, 20, 2.45) == (6, 55)
    # 1.3 * 5 = 6.5 -> 7 for both the first and the last window
    assert subpool_window(0, 5, 100, 5, 1.3) == (0, 7)
    assert subpool_window(4, 5, 100, 5, 1.3) == (93, 100)
    # middle ends rounded on their own: [10 - 0.75, 15 + 0.75) -> [9, 16)
    assert subpool_window(2, 5, 100, 5, 1.3) == (9, 16)
    # exact halves go up: [5 - 0.5, 10 + 0.5) -> [5, 11)
    assert subpool_window(1, 5, 100, 5, 1.2) == (5, 11)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1, 10, N, A, 1.0), "cycle"),
        ((10, 10, N, A, 1.0), "cycle"),
        ((0, 0, N, A, 1.0), "n_cycles"),
        ((0, 10, 0, A, 1.0), "pool_size"),
        ((0, 10, N, 0, 1.0), r"addendum must be >= 1, got 0"),
        ((0, 10, N, A, -1), r"beta must be .*> 0, got -1"),
        ((0, 10, N, A, 0.0), r"beta"),
        ((0, 10, N, A, math.nan), r"beta"),
    ],
)
def test_window_rejects(args, match):
    with pytest.raises(BalError, match=match):
        subpool_window(*args)


def test_window_rejects_mode():
    with pytest.raises(BalError, match=r"mode.*centred, released.*'middle'"):
        subpool_window(1, 10, N, A, 1.0, "middle")


# --------------------------------------------------------------------------------------
# Sub-pools
# --------------------------------------------------------------------------------------

ORDER = np.array([9, 3, 7, 1, 5, 0, 8, 2, 6, 4])  # order[pos] = pool index


def _labelled(*indices, n=10):
    mask = np.zeros(n, dtype=bool)
    mask[list(indices)] = True
    return mask


def test_subpool_removes_labelled_and_keeps_sorted_order():
    # window positions 1..4 hold pool indices 3, 7, 1, 5; 7 and 5 are labelled.
    sub = build_subpool(ORDER, (1, 5), _labelled(7, 5), k=2)
    assert isinstance(sub, SubPool)
    np.testing.assert_array_equal(sub.candidates, [3, 1])
    assert sub.candidates.dtype == np.int64
    assert (sub.window, sub.n_in_window, sub.n_topped_up) == ((1, 5), 2, 0)
    # a window with more than k keeps all its unlabelled images
    sub = build_subpool(ORDER, (1, 5), _labelled(7), k=1)
    np.testing.assert_array_equal(sub.candidates, [3, 1, 5])
    assert (sub.n_in_window, sub.n_topped_up) == (3, 0)


def test_subpool_tops_up_from_nearest_positions_both_sides():
    # window [4, 6): positions 4, 5 = indices 5 (labelled), 0. Outside, by distance:
    # pos 3 (idx 1, d=1) and pos 6 (idx 8, d=1); pos 2 (idx 7) is labelled; pos 7
    # (idx 2, d=2); pos 1 (idx 3, d=3) ties with pos 8 (idx 6, d=3) -> pos 1 first.
    labelled = _labelled(5, 7)
    sub = build_subpool(ORDER, (4, 6), labelled, k=5)
    np.testing.assert_array_equal(sub.candidates, [0, 1, 8, 2, 3])
    assert (sub.n_in_window, sub.n_topped_up) == (1, 4)
    sub = build_subpool(ORDER, (4, 6), labelled, k=6)
    np.testing.assert_array_equal(sub.candidates, [0, 1, 8, 2, 3, 6])


def test_subpool_empty_window_and_edge_windows():
    # empty window at 5: pos 4 (d=1) and pos 5 (d=1) tie -> pos 4 first
    sub = build_subpool(ORDER, (5, 5), _labelled(), k=3)
    np.testing.assert_array_equal(sub.candidates, [5, 0, 1])  # pos 4, 5, then pos 3 (d=2)
    assert (sub.n_in_window, sub.n_topped_up) == (0, 3)
    # window at the start: top-up only from the right
    sub = build_subpool(ORDER, (0, 2), _labelled(9), k=3)
    np.testing.assert_array_equal(sub.candidates, [3, 7, 1])
    # window at the end: top-up only from the left
    sub = build_subpool(ORDER, (8, 10), _labelled(4), k=3)
    np.testing.assert_array_equal(sub.candidates, [6, 2, 8])


def test_subpool_never_contains_labelled_images():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(5, 60))
        order = rng.permutation(n)
        labelled = rng.random(n) < 0.5
        free = int((~labelled).sum())
        if free == 0:
            continue
        start = int(rng.integers(0, n + 1))
        stop = int(rng.integers(start, n + 1))
        k = int(rng.integers(1, free + 1))
        sub = build_subpool(order, (start, stop), labelled, k)
        assert not labelled[sub.candidates].any()
        assert len(set(sub.candidates.tolist())) == len(sub.candidates)
        assert len(sub.candidates) == max(k, sub.n_in_window)
        assert sub.n_in_window == int((~labelled[order[start:stop]]).sum())


def test_subpool_too_few_unlabelled_left():
    with pytest.raises(BalError, match=r"k=3 new labels but only 2 unlabelled .* pool of 10"):
        build_subpool(ORDER, (0, 10), _labelled(*range(8)), k=3)


@pytest.mark.parametrize(
    ("order", "window", "labelled", "k", "match"),
    [
        (np.array([0, 1, 1]), (0, 3), np.zeros(3, bool), 1, "permutation"),
        (np.array([0, 1, 3]), (0, 3), np.zeros(3, bool), 1, "permutation"),
        (np.array([0.0, 1.0, 2.0]), (0, 3), np.zeros(3, bool), 1, "order"),
        (np.arange(3), (0, 3), np.zeros(4, bool), 1, "labelled"),
        (np.arange(3), (0, 3), np.zeros(3, int), 1, "labelled"),
        (np.arange(3), (2, 1), np.zeros(3, bool), 1, "window"),
        (np.arange(3), (0, 4), np.zeros(3, bool), 1, "window"),
        (np.arange(3), (0, 3), np.zeros(3, bool), 0, "k"),
    ],
)
def test_subpool_rejects(order, window, labelled, k, match):
    with pytest.raises(BalError, match=match):
        build_subpool(order, window, labelled, k)


# --------------------------------------------------------------------------------------
# Cycle 0: --first
# --------------------------------------------------------------------------------------


def test_select_first_rules():
    assert FIRST_RULES == ("high1st", "low1st", "uni", "rand", "typical")
    np.testing.assert_array_equal(select_first(10, 3, "high1st"), [0, 1, 2])
    np.testing.assert_array_equal(select_first(10, 3, "low1st"), [7, 8, 9])
    np.testing.assert_array_equal(select_first(10, 3, "uni"), [0, 3, 6])
    np.testing.assert_array_equal(select_first(7, 3, "uni"), [0, 2, 4])
    np.testing.assert_array_equal(select_first(49, 7, "uni"), np.arange(0, 49, 7))
    np.testing.assert_array_equal(select_first(5, 5, "uni"), np.arange(5))
    for rule in ("high1st", "low1st", "uni"):
        assert select_first(10, 3, rule).dtype == np.int64


def test_select_first_rand_deterministic_distinct():
    a = select_first(1000, 50, "rand", np.random.default_rng(42))
    b = select_first(1000, 50, "rand", np.random.default_rng(42))
    c = select_first(1000, 50, "rand", 42)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert a.dtype == np.int64 and len(set(a.tolist())) == 50
    assert np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 1000
    assert not np.array_equal(a, np.arange(50))
    assert not np.array_equal(a, select_first(1000, 50, "rand", 43))


def test_select_first_rejects():
    with pytest.raises(BalError, match="k=4 .* only 3"):
        select_first(3, 4, "uni")
    with pytest.raises(BalError, match="high1st, low1st, uni, rand"):
        select_first(10, 3, "middle")
    with pytest.raises(BalError, match="rng"):
        select_first(10, 3, "rand")
    with pytest.raises(BalError, match="k"):
        select_first(10, 0, "high1st")


# --------------------------------------------------------------------------------------
# Cycles c > 0: --sampling
# --------------------------------------------------------------------------------------

EPS = 1e-12
# Rows designed so that the three classic rules disagree:
#   row 0: p = (.5, .5, 0, 0)     1-max .50, margin  0   (top), entropy ln 2 = .693
#   row 1: p = (.4, .3, .3, 0)    1-max .60 (top), margin -.10, entropy 1.089
#   row 2: p = (.45, .2, .2, .15) 1-max .55, margin -.25, entropy 1.288 (top)
PROBS = np.array(
    [[0.5, 0.5, EPS, EPS], [0.4, 0.3, 0.3, EPS], [0.45, 0.2, 0.2, 0.15]]
)
LOGITS = np.log(PROBS) + 3.0  # a shift must not matter


def _entropy(p):
    return -sum(x * math.log(x) for x in p)


def test_scores_by_hand():
    np.testing.assert_allclose(
        uncertainty_scores(LOGITS, "confidence"), [0.5, 0.6, 0.55], atol=1e-9
    )
    np.testing.assert_allclose(uncertainty_scores(LOGITS, "margin"), [0.0, -0.1, -0.25], atol=1e-9)
    np.testing.assert_allclose(
        uncertainty_scores(LOGITS, "entropy"),
        [math.log(2), _entropy([0.4, 0.3, 0.3]), _entropy([0.45, 0.2, 0.2, 0.15])],
        atol=1e-9,
    )


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("confidence", [1, 2, 0]), ("entropy", [2, 1, 0]), ("margin", [0, 1, 2])],
)
def test_rules_choose_different_rows(rule, expected):
    np.testing.assert_array_equal(select_uncertain(LOGITS, 3, rule), expected)
    assert select_uncertain(LOGITS, 1, rule).tolist() == expected[:1]
    assert select_uncertain(LOGITS, 1, rule).dtype == np.int64


def test_confidence_normalized_differs_from_confidence():
    # row 0: small logits (.2, 0): plain 1 - sigmoid(.2) = .450; normalised (1, 0): .269
    # row 1: (4, 3): plain 1 - sigmoid(1) = .269; normalised (.8, .6): 1 - sigmoid(.2) = .450
    z = np.array([[0.2, 0.0], [4.0, 3.0]])
    lo, hi = 1 - 1 / (1 + math.exp(-1.0)), 1 - 1 / (1 + math.exp(-0.2))
    np.testing.assert_allclose(uncertainty_scores(z, "confidence"), [hi, lo], atol=1e-12)
    np.testing.assert_allclose(
        uncertainty_scores(z, "confidence-normalized"), [lo, hi], atol=1e-12
    )
    assert select_uncertain(z, 1, "confidence").tolist() == [0]
    assert select_uncertain(z, 1, "confidence-normalized").tolist() == [1]
    # scaling a row changes plain confidence, not the normalised one
    scaled = np.array([[4.0, 3.0], [40.0, 30.0]])
    plain = uncertainty_scores(scaled, "confidence")
    norm = uncertainty_scores(scaled, "confidence-normalized")
    assert plain[0] > plain[1] + 0.2
    assert norm[0] == pytest.approx(norm[1], abs=1e-15)
    # a zero row stays zero: uniform softmax, no NaN
    assert uncertainty_scores(np.zeros((1, 4)), "confidence-normalized")[0] == pytest.approx(0.75)


def test_uniform_row_is_most_uncertain_for_every_rule():
    z = np.array([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 2.0, 0.0]])
    for rule in ("confidence", "entropy", "margin", "confidence-normalized"):
        assert select_uncertain(z, 1, rule).tolist() == [1], rule


def test_very_confident_rows_are_still_ordered():
    # 1 - softmax max rounds to 0.0 for both rows; the score must still rank row 1 first.
    z = np.array([[60.0, 0.0], [50.0, 0.0]])
    s = uncertainty_scores(z, "confidence")
    assert s[1] > s[0] > 0
    assert select_uncertain(z, 1, "confidence").tolist() == [1]
    # 0 log 0 = 0: an underflowed probability gives zero entropy, not NaN
    assert uncertainty_scores(np.array([[1000.0, 0.0, 0.0]]), "entropy")[0] == 0.0


@pytest.mark.parametrize("rule", ["confidence", "entropy", "margin", "confidence-normalized"])
def test_ties_broken_by_smaller_position(rule):
    z = np.tile([[2.0, 1.0, 0.0]], (40, 1))
    z[5] = [9.0, 0.0, 0.0]  # confident: last
    got = select_uncertain(z, 39, rule)
    np.testing.assert_array_equal(got, np.r_[0:5, 6:40])


def test_rand_sampling():
    z = np.zeros((100, 3))
    a = select_uncertain(z, 10, "rand", np.random.default_rng(5))
    np.testing.assert_array_equal(a, select_uncertain(z, 10, "rand", 5))
    assert a.dtype == np.int64 and len(set(a.tolist())) == 10 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, np.arange(10))
    with pytest.raises(BalError, match="rng"):
        select_uncertain(z, 10, "rand")
    with pytest.raises(BalError, match="select_uncertain"):
        uncertainty_scores(z, "rand")


def test_sampling_rejects():
    assert "confidence-normalized" in SAMPLING_RULES
    z = np.zeros((3, 2))
    with pytest.raises(BalError, match="k"):
        select_uncertain(z, 4, "entropy")
    with pytest.raises(BalError, match="k"):
        select_uncertain(z, 0, "entropy")
    with pytest.raises(BalError, match="confidence, entropy, margin, rand"):
        select_uncertain(z, 1, "bald")
    with pytest.raises(BalError, match="confidence, entropy, margin, rand"):
        uncertainty_scores(z, "bald")
    for bad in (np.zeros(3), np.zeros((3, 1)), np.array([[0.0, np.nan]]), np.zeros((0, 2))):
        with pytest.raises(BalError, match="logits"):
            uncertainty_scores(bad, "confidence")
