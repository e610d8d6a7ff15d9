"""Tests of bal.selection.baselines (Core-set, BADGE, TypiClust) against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from bal.errors import BalError
from bal.selection import baselines, diversity, geometry
from bal.selection.baselines import (
    badge_select,
    gradient_embedding,
    kcenter_greedy,
    kmeanspp_seeding,
    typiclust_select,
)

# --------------------------------------------------------------------------------------
# Core-set: kcenter_greedy
# --------------------------------------------------------------------------------------


def _column(values):
    return np.asarray(values, dtype=np.float64)[:, None]


def test_kcenter_1d_hand_order():
    # Labelled 0; candidates 1, 2, 10, 11. Distances to {0}: 1, 2, 10, 11 -> 11.
    # Then to {0, 11}: 1, 2, 1 -> 2. Then to {0, 11, 2}: 1, 1 -> tie, earlier position: 1.
    x = _column([0, 1, 2, 10, 11])
    labelled = np.array([True, False, False, False, False])
    out = kcenter_greedy(x, labelled, np.array([1, 2, 3, 4]), 4)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [4, 2, 1, 3])


def test_kcenter_tie_goes_to_earliest_candidate_position_not_smallest_index():
    x = _column([0, 1, 2, 10, 11])
    labelled = np.array([True, False, False, False, False])
    # Same geometry, candidates listed as [10, 1, 2, 11]: the 1-vs-10 tie now goes to 10.
    out = kcenter_greedy(x, labelled, np.array([3, 1, 2, 4]), 4)
    np.testing.assert_array_equal(out, [4, 2, 3, 1])


def test_kcenter_2d_hand_order():
    # Labelled (0,0). A=(6,8) d=10, B=(0,1) d=1, C=(6,0) d=6, D=(3,4) d=5.
    # After A: B min(1, 9.2)=1, C min(6, 8)=6, D min(5, 5)=5 -> C.
    # After C: B min(1, 6.1)=1, D min(5, 5)=5 -> D, then B.
    x = np.array([[0, 0], [6, 8], [0, 1], [6, 0], [3, 4]], dtype=np.float32)
    labelled = np.array([True, False, False, False, False])
    out = kcenter_greedy(x, labelled, np.array([1, 2, 3, 4]), 4)
    np.testing.assert_array_equal(out, [1, 3, 4, 2])
    np.testing.assert_array_equal(kcenter_greedy(x, labelled, np.array([1, 2, 3, 4]), 2), [1, 3])


def test_kcenter_no_labelled_starts_farthest_from_mean_of_whole_pool():
    # Pool mean (-94/5) is pulled left by the non-candidate -100, so the farthest candidate
    # is 3 (a mean over the candidates alone, 1.5, would tie 0 and 3 and start at 0).
    # Then 0 (distance 3), then 1 and 2 tie at distance 1 -> earlier position, 1.
    x = _column([0, 1, 2, 3, -100])
    labelled = np.zeros(5, dtype=bool)
    out = kcenter_greedy(x, labelled, np.array([0, 1, 2, 3]), 4)
    np.testing.assert_array_equal(out, [3, 0, 1, 2])


def _kcenter_brute(x, labelled, candidates, k):
    centres = list(np.flatnonzero(labelled))
    avail = [int(c) for c in candidates if not labelled[c]]
    if not centres:
        mean = x.mean(axis=0)
        first = max(avail, key=lambda c: (np.linalg.norm(x[c] - mean), -avail.index(c)))
        centres.append(first)
        picks = [first]
    else:
        picks = []
    while len(picks) < k:
        rest = [c for c in avail if c not in picks]
        dist = [min(np.linalg.norm(x[c] - x[z]) for z in centres) for c in rest]
        best = rest[int(np.argmax(dist))]
        picks.append(best)
        centres.append(best)
    return picks


@pytest.mark.parametrize("n_labelled", [0, 7])
def test_kcenter_matches_brute_force_and_skips_labelled_and_non_candidates(n_labelled):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 4))
    labelled = np.zeros(60, dtype=bool)
    labelled[rng.choice(60, n_labelled, replace=False)] = True
    # Candidates: 40 of 60 in shuffled order, labelled ones included on purpose.
    candidates = rng.permutation(60)[:40]
    available = set(candidates[~labelled[candidates]].tolist())
    out = kcenter_greedy(x, labelled, candidates, 15)
    assert out.tolist() == _kcenter_brute(x, labelled, candidates, 15)
    assert set(out.tolist()) <= available
    everything = kcenter_greedy(x, labelled, candidates, len(available))
    assert sorted(everything.tolist()) == sorted(available)


def test_kcenter_duplicates_of_centres_are_picked_last_and_once():
    # Candidates 1 and 2 duplicate the labelled point: distance 0 once 3 is taken.
    x = _column([5, 5, 5, 9])
    labelled = np.array([True, False, False, False])
    out = kcenter_greedy(x, labelled, np.array([1, 2, 3]), 3)
    np.testing.assert_array_equal(out, [3, 1, 2])


@pytest.mark.parametrize(
    ("features", "labelled", "candidates", "k", "match"),
    [
        (np.zeros(4), np.zeros(4, bool), [0], 1, "features must be a 2-D"),
        (np.array([[0.0], [np.nan]]), np.zeros(2, bool), [0], 1, "features contains NaN"),
        (np.zeros((3, 1)), np.zeros(3, int), [0], 1, "labelled must be a boolean"),
        (np.zeros((3, 1)), np.zeros(2, bool), [0], 1, r"labelled must have shape \(3,\)"),
        (np.zeros((3, 1)), np.zeros(3, bool), [0, 3], 1, r"candidates must hold .* in \[0, 3\)"),
        (np.zeros((3, 1)), np.zeros(3, bool), [0, 0], 1, "candidates must not repeat"),
        (np.zeros((3, 1)), np.zeros(3, bool), [0.0], 1, "candidates must be an integer"),
        (np.zeros((3, 1)), np.zeros(3, bool), [0, 1], 0, r"k must satisfy 1 <= k <= 2 .*got 0"),
        (np.zeros((3, 1)), np.array([True, False, False]), [0, 1], 2, r"1 <= k <= 1 .*got 2"),
        (np.zeros((3, 1)), np.zeros(3, bool), [0, 1], 1.0, "k must be an integer"),
    ],
)
def test_kcenter_rejects(features, labelled, candidates, k, match):
    with pytest.raises(BalError, match=match):
        kcenter_greedy(features, labelled, np.asarray(candidates), k)


# --------------------------------------------------------------------------------------
# BADGE: gradient_embedding
# --------------------------------------------------------------------------------------


def test_gradient_embedding_equals_autograd_last_layer_gradient():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    m, c, d = 6, 4, 5
    feats = rng.normal(size=(m, d))
    weight = rng.normal(size=(c, d))
    logits = feats @ weight.T
    emb = gradient_embedding(logits, feats.astype(np.float32))
    assert emb.dtype == np.float32
    assert emb.shape == (m, c * d)
    for i in range(m):
        w = torch.tensor(weight, dtype=torch.float64, requires_grad=True)
        f = torch.tensor(feats[i : i + 1], dtype=torch.float64)
        out = f @ w.T
        loss = torch.nn.functional.cross_entropy(out, out.argmax(dim=1))
        loss.backward()
        # Row-major flattening of the (C, D) gradient: class-major blocks of D.
        np.testing.assert_allclose(emb[i], w.grad.numpy().ravel(), rtol=1e-5, atol=1e-6)


def test_gradient_embedding_hand_row_and_tied_top_logits():
    # logits (0, 0, log 2): p = (1/4, 1/4, 1/2), y_hat = 2; features (1, -2).
    emb = gradient_embedding(np.array([[0.0, 0.0, np.log(2.0)]]), np.array([[1.0, -2.0]]))
    np.testing.assert_allclose(emb[0], [0.25, -0.5, 0.25, -0.5, -0.5, 1.0], rtol=1e-6)
    # Equal top logits: y_hat is the smaller class, 0.
    emb = gradient_embedding(np.array([[1.0, 1.0, 0.0]]), np.array([[1.0]]))
    assert emb[0, 0] < 0 < emb[0, 1]


def test_gradient_embedding_rejects():
    with pytest.raises(BalError, match=r"features must have one row per row of logits \(2\)"):
        gradient_embedding(np.zeros((2, 3)), np.zeros((3, 4)))
    with pytest.raises(BalError, match="features contains NaN"):
        gradient_embedding(np.zeros((2, 3)), np.array([[1.0], [np.inf]]))
    with pytest.raises(BalError, match="logits must have at least 2 columns"):
        gradient_embedding(np.zeros((2, 1)), np.zeros((2, 4)))


# --------------------------------------------------------------------------------------
# BADGE: kmeanspp_seeding, badge_select
# --------------------------------------------------------------------------------------


def test_kmeanspp_first_pick_is_largest_norm_row_for_any_seed():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 8)).astype(np.float32)
    x[17] *= 10.0
    for seed in range(5):
        assert kmeanspp_seeding(x, 3, seed)[0] == 17


def test_kmeanspp_deterministic_distinct_and_complete():
    x = np.random.default_rng(2).normal(size=(40, 6))
    a = kmeanspp_seeding(x, 10, 123)
    np.testing.assert_array_equal(a, kmeanspp_seeding(x, 10, np.random.default_rng(123)))
    assert a.dtype == np.int64
    assert len(set(a.tolist())) == 10
    assert not all(np.array_equal(a, kmeanspp_seeding(x, 10, s)) for s in range(124, 128))
    full = kmeanspp_seeding(x, 40, 0)
    assert sorted(full.tolist()) == list(range(40))


def test_kmeanspp_one_pick_per_separated_blob():
    rng = np.random.default_rng(4)
    centres = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    x = np.concatenate([c + rng.normal(size=(30, 2)) for c in centres])
    blob = np.repeat(np.arange(3), 30)
    for seed in range(20):
        first3 = kmeanspp_seeding(x, 3, seed)
        assert sorted(blob[first3].tolist()) == [0, 1, 2], seed


def test_kmeanspp_draws_proportional_to_squared_distance():
    # First pick is 10 (largest norm). Then D = 1 for 9 and D = 2 for 8: P(8) = 4/5 with
    # D^2 weights (2/3 with D weights, 1/2 uniform).
    x = _column([10.0, 9.0, 8.0])
    rng = np.random.default_rng(5)
    trials = 3000
    hits = sum(int(kmeanspp_seeding(x, 2, rng)[1] == 2) for _ in range(trials))
    assert abs(hits / trials - 0.8) < 0.03


def test_kmeanspp_duplicates_get_zero_weight_then_uniform():
    # Wide float32 rows with large norms: the fast ||a||^2 - 2a.b + ||b||^2 form is
    # far from 0 for duplicates, so this checks they are recomputed exactly.
    rng = np.random.default_rng(6)
    a = (rng.normal(size=256) * 1000).astype(np.float32)
    b = a * np.float32(0.5)
    x = np.stack([b, a, b, a, a, b])
    thirds = set()
    for seed in range(30):
        out = kmeanspp_seeding(x, 4, seed)
        assert out[0] == 1  # largest norm, earliest of the three copies
        assert out[1] in (0, 2, 5)  # the only rows with D > 0
        assert len(set(out.tolist())) == 4
        thirds.add(int(out[2]))
    # The third pick is uniform over the 4 unpicked rows, not a fixed one.
    assert len(thirds) >= 3
    assert sorted(kmeanspp_seeding(x, 6, 0).tolist()) == list(range(6))


def test_kmeanspp_all_duplicates_uniform_and_exact_zero_distances():
    rng = np.random.default_rng(12)
    a = (rng.normal(size=256) * 1000).astype(np.float32)
    x = np.stack([a] * 5)
    # The float32 dot products differ from row to row (blocked sums): without the exact
    # recheck these distances are +-tens, not 0, and the picks follow that noise.
    for rows in range(2, 10):
        dup = np.stack([a] * rows)
        norms2 = geometry._row_sq_norms(dup)
        np.testing.assert_array_equal(geometry._sq_dists_to_row(dup, norms2, 0), np.zeros(rows))
    seconds = [int(kmeanspp_seeding(x, 2, seed)[1]) for seed in range(80)]
    counts = np.bincount(seconds, minlength=5)
    assert counts[0] == 0 and counts[1:].min() >= 8, counts


def test_badge_select_is_kmeanspp_on_gradient_embeddings():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(50, 4))
    feats = rng.normal(size=(50, 8))
    expected = kmeanspp_seeding(gradient_embedding(logits, feats), 12, 9)
    np.testing.assert_array_equal(badge_select(logits, feats, 12, 9), expected)


def test_kmeanspp_rejects():
    x = np.zeros((3, 2))
    with pytest.raises(BalError, match=r"k must satisfy 1 <= k <= 3 \(rows of embeddings\), got 4"):
        kmeanspp_seeding(x, 4, 0)
    with pytest.raises(BalError, match="pass rng"):
        kmeanspp_seeding(x, 2, None)
    with pytest.raises(BalError, match="embeddings contains NaN"):
        kmeanspp_seeding(np.array([[0.0, np.nan]]), 1, 0)
    with pytest.raises(BalError, match=r"embeddings must be a 2-D array \(M, W\)"):
        kmeanspp_seeding(np.zeros(3), 1, 0)


# --------------------------------------------------------------------------------------
# TypiClust
# --------------------------------------------------------------------------------------


def _ring_blob(centre, n_ring, radius=1.0):
    """A blob whose centre point is its unique most typical point."""
    angles = 2 * np.pi * np.arange(n_ring) / n_ring
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius
    return np.concatenate([ring[:2], [[0.0, 0.0]], ring[2:]]) + centre


@pytest.fixture
def blobs():
    """Blobs A (12 points), B (10), C (9), shuffled; returns x, blob id, centre indices."""
    parts = [_ring_blob((0, 0), 11), _ring_blob((50, 0), 9), _ring_blob((0, 50), 8)]
    x = np.concatenate(parts)
    blob = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    centre = np.concatenate([[0], np.cumsum([len(p) for p in parts])[:-1]]) + 2
    perm = np.random.default_rng(8).permutation(len(x))
    inverse = np.argsort(perm)
    return x[perm], blob[perm], inverse[centre]


def test_typiclust_picks_each_blob_centre_largest_blob_first(blobs):
    x, _, centre = blobs
    for seed in range(3):
        out = typiclust_select(x, np.zeros(len(x), bool), 3, seed)
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, centre)


def test_typiclust_prefers_clusters_with_fewest_labelled(blobs):
    x, blob, centre = blobs
    labelled = np.zeros(len(x), bool)
    labelled[centre[0]] = True  # blob A is covered
    out = typiclust_select(x, labelled, 2, 0)
    np.testing.assert_array_equal(out, centre[1:])
    # 3 clusters, k=4: B, C (0 labelled), then all hold 1 -> largest, A; then B (10 > 9).
    out = typiclust_select(x, labelled, 4, 0, max_clusters=3)
    np.testing.assert_array_equal(blob[out], [1, 2, 0, 1])
    np.testing.assert_array_equal(out[:2], centre[1:])
    assert not labelled[out].any() and len(set(out.tolist())) == 4


def test_typiclust_min_cluster_size_skips_tiny_outlier_cluster(blobs):
    x, blob, _ = blobs
    x = np.concatenate([x, [[500.0, 500.0], [500.5, 500.0]]])
    outliers = {len(x) - 2, len(x) - 1}
    labelled = np.zeros(len(x), bool)
    # k=4 -> 4 clusters: the 3 blobs and the outlier pair.
    kept = typiclust_select(x, labelled, 4, 0, min_cluster_size=5)
    assert not outliers & set(kept.tolist())
    assert sorted(blob[kept[:3]].tolist()) == [0, 1, 2] and blob[kept[3]] == 0
    unfiltered = typiclust_select(x, labelled, 4, 0, min_cluster_size=1)
    assert len(outliers & set(unfiltered.tolist())) == 1
    # No cluster reaches 100 points: all clusters are used, as with no filter.
    everything_small = typiclust_select(x, labelled, 4, 0, min_cluster_size=100)
    np.testing.assert_array_equal(everything_small, unfiltered)


def test_typiclust_exhausts_pool_and_skips_fully_labelled_clusters():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(20, 3))
    labelled = np.zeros(20, bool)
    labelled[[1, 4, 9, 13, 17]] = True
    out = typiclust_select(x, labelled, 15, 1, min_cluster_size=1)
    assert sorted(out.tolist()) == np.flatnonzero(~labelled).tolist()
    # A fully labelled far pair has the fewest labelled points (2) but nothing to pick.
    y = np.concatenate([_ring_blob((0, 0), 8), [[90.0, 90.0], [90.0, 91.0]]])
    lab = np.zeros(len(y), bool)
    lab[[0, 1, 3, 9, 10]] = True
    out = typiclust_select(y, lab, 1, 0, max_clusters=2, min_cluster_size=1)
    np.testing.assert_array_equal(out, [2])


def test_typiclust_deterministic_and_minibatch_path():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    labelled = np.zeros(300, bool)
    labelled[:5] = True
    a = typiclust_select(x, labelled, 60, 3)  # K = 65 > 50: MiniBatchKMeans
    np.testing.assert_array_equal(a, typiclust_select(x, labelled, 60, np.random.default_rng(3)))
    assert len(set(a.tolist())) == 60 and not labelled[a].any()
    b = typiclust_select(x, labelled, 10, 3)
    np.testing.assert_array_equal(b, typiclust_select(x, labelled, 10, 3))


def test_typicality_matches_brute_force_and_handles_duplicates():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(25, 3))
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(d, np.inf)
    for knn in (1, 4, 24, 50):
        kk = min(knn, 24)
        expected = 1.0 / np.sort(d, axis=1)[:, :kk].mean(axis=1)
        np.testing.assert_allclose(baselines.typicality(x, knn), expected, rtol=1e-12)
    dup = np.array([[3.0, 1.0], [3.0, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(baselines.typicality(dup, 1), [np.inf, np.inf, 1 / np.sqrt(10)])
    np.testing.assert_array_equal(baselines.typicality(np.ones((1, 2)), 20), [np.inf])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 4}, r"k must satisfy 1 <= k <= 3 \(unlabelled rows of features\), got 4"),
        ({"k": 0}, r"k must satisfy 1 <= k <= 3"),
        ({"rng": None}, "pass rng"),
        ({"max_clusters": 0}, "max_clusters must be >= 1, got 0"),
        ({"min_cluster_size": 0}, "min_cluster_size must be >= 1, got 0"),
        ({"knn": 0}, "knn must be >= 1, got 0"),
        ({"labelled": np.zeros(4, int)}, "labelled must be a boolean"),
        ({"features": np.array([[0.0], [1.0], [np.nan], [2.0]])}, "features contains NaN"),
    ],
)
def test_typiclust_rejects(kwargs, match):
    args = {"features": np.arange(4.0)[:, None], "labelled": np.array([True, False, False, False]),
            "k": 1, "rng": 0}
    args.update(kwargs)
    with pytest.raises(BalError, match=match):
        typiclust_select(**args)


def test_badge_on_factors_picks_what_the_dense_embeddings_pick(monkeypatch):
    """Beyond its memory limit BADGE never builds the M x C x D embeddings; the picks are the same."""
    rng = np.random.default_rng(0)
    logits, features = rng.normal(size=(300, 4)), rng.normal(size=(300, 6))
    dense = badge_select(logits, features, 20, 3)
    monkeypatch.setattr(diversity, "_BADGE_DENSE_LIMIT", 0)
    monkeypatch.setattr(diversity, "gradient_embedding", lambda *a: pytest.fail("built the embeddings"))
    np.testing.assert_array_equal(badge_select(logits, features, 20, 3), dense)
