"""The cold-start and sub-pool rules added for label efficiency, on hand-computed cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bal.errors import BalError
from bal.selection import create_strategy, select_first
from bal.selection.baselines import probcover_delta, probcover_select
from bal.selection.strategies import Pretext, SelectionContext

# three blobs of five points: a centre and four neighbours at distance 1
BLOBS = np.array([[c + dx, dy] for c in (0.0, 10.0, 20.0) for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))])
LINE = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [10.0]])


def test_typical_takes_the_centre_of_each_cluster():
    # a centre's mean distance to its 4 neighbours is 1; a neighbour's is (1 + 2 + 2 * sqrt 2) / 4
    np.testing.assert_array_equal(select_first(15, 3, "typical", 0, features=BLOBS), [0, 5, 10])
    # returned in increasing position order whatever the cluster ids
    shuffled = BLOBS[::-1].copy()
    np.testing.assert_array_equal(select_first(15, 3, "typical", 0, features=shuffled), [4, 9, 14])


def test_typical_fills_empty_clusters_with_the_most_typical_remaining():
    # five copies of one point and one far point: k-means finds 2 distinct clusters for k = 3
    x = np.array([[0.0, 0.0]] * 5 + [[9.0, 9.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = select_first(6, 3, "typical", 0, features=x, knn=2)
    assert len(set(out.tolist())) == 3 and 5 in out  # the far point, and two of the copies


def test_typical_needs_features_of_every_candidate():
    with pytest.raises(BalError, match="features"):
        select_first(15, 3, "typical", 0)
    with pytest.raises(BalError, match="14 rows"):
        select_first(15, 3, "typical", 0, features=BLOBS[:14])
    with pytest.raises(BalError, match="rng"):
        select_first(15, 3, "typical", None, features=BLOBS)


def test_probcover_greedy_coverage_by_hand():
    # radius 0.15: balls 0:{0,1} 1:{0,1,2} 2:{1,2} 3:{3,4} 4:{3,4} 5:{5}
    # 3 and 4 tie (two points each): a seeded random order of the pool decides
    labelled = np.zeros(6, bool)
    picks = {tuple(probcover_select(LINE, labelled, 3, 0.15, seed).tolist()) for seed in range(20)}
    assert picks == {(1, 3, 5), (1, 4, 5)}
    labelled[1] = True  # covers 0, 1, 2 already
    assert probcover_select(LINE, labelled, 2, 0.15, 0).tolist() in ([3, 5], [4, 5])
    # once everything is covered the rest is drawn at random from the unlabelled points
    out = probcover_select(LINE, np.zeros(6, bool), 5, 0.15, 0)
    assert out[0] == 1 and out[1] in (3, 4) and out[2] == 5 and len(set(out.tolist())) == 5
    with pytest.raises(BalError, match="delta"):
        probcover_select(LINE, labelled, 1, -1.0, 0)


def test_probcover_ties_do_not_follow_the_pool_order():
    # 400 isolated points in "class order" (100 a class): every ball holds only its own point,
    # so all tie; the smallest index would take 40 of class 0 (as it did on CIFAR-10's folders)
    x = np.arange(400, dtype=np.float64)[:, None]
    classes = np.repeat(np.arange(4), 100)
    picks = probcover_select(x, np.zeros(400, bool), 40, 0.1, 0)
    assert len(set(classes[picks].tolist())) == 4
    assert picks.tolist() == probcover_select(x, np.zeros(400, bool), 40, 0.1, 0).tolist()  # seeded
    assert picks.tolist() != probcover_select(x, np.zeros(400, bool), 40, 0.1, 1).tolist()


def test_probcover_matches_the_exact_ball_graph_at_the_radius_it_chooses():
    # probcover_delta puts δ just below a distance of the pool, so pairs sit on the boundary;
    # the fast distance formula alone misjudged some of them (6 of these 10 pools picked
    # differently before boundary pairs were recomputed from explicit differences)
    for trial in range(10):
        rng = np.random.default_rng(trial)
        n, d = 400, int(rng.integers(2, 30))
        x = rng.normal(size=(n, d)).astype(np.float32)
        if trial % 2:
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        labelled = rng.random(n) < 0.1
        delta = probcover_delta(x, rng.integers(0, 5, n), 0.95)
        exact = x.astype(np.float64)
        ball = np.stack([np.einsum("ij,ij->i", exact - exact[i], exact - exact[i]) <= delta * delta
                         for i in range(n)])
        covered, available, expected = ball[labelled].any(axis=0), ~labelled, []
        priority = np.random.default_rng(0).permutation(n)  # ties: probcover_select's first draw
        for _ in range(20):
            gain = np.where(available, (ball & ~covered[None, :]).sum(axis=1), -1)
            tied = np.flatnonzero(gain == gain.max())
            best = int(tied[np.argmin(priority[tied])])
            if gain[best] <= 0:
                break
            expected.append(best)
            available[best] = False
            covered |= ball[best]
        assert probcover_select(x, labelled, len(expected), delta, 0).tolist() == expected, trial


def purity(x, labels, delta):
    d = np.abs(x[:, None, 0] - x[None, :, 0])
    return np.mean([(labels[d[i] <= delta] == labels[i]).all() for i in range(len(x))])


def test_probcover_delta_is_the_largest_pure_radius():
    pseudo = np.array([0, 0, 0, 1, 1, 2])
    # distance to the nearest point of another pseudo-label: 5.0 4.9 4.8 4.8 4.9 4.9 (in floats)
    d = np.array([5.0 - 0.0, 5.0 - 0.1, 5.0 - 0.2, 5.0 - 0.2, 10.0 - 5.1, 10.0 - 5.1])
    for alpha, edge in ((1.0, d[2]), (0.8, d[2]), (0.5, d[1])):  # 0.8: at 4.8 only 4 of 6 balls are pure
        delta = probcover_delta(LINE, pseudo, alpha)
        assert delta == np.nextafter(edge, -np.inf), alpha
        assert purity(LINE, pseudo, delta) >= alpha > purity(LINE, pseudo, edge)
    with pytest.raises(BalError, match="two different"):
        probcover_delta(LINE, np.zeros(6, int))


def test_probcover_strategy_runs_without_a_model():
    ctx = SelectionContext(cycle=0, budgets=[3, 3], labelled=np.zeros(15, bool), rng=np.random.default_rng(0),
                           pretext=Pretext(features=BLOBS + 100.0), n_classes=3)
    picked, info = create_strategy("probcover").select(ctx)
    assert sorted(int(i) // 5 for i in picked) == [0, 1, 2] and info["delta"] > 0



def test_probcover_delta_follows_the_features_not_the_array_object():
    # A bench runs one strategy object over every seed: a later seed's features, even in the
    # very array object an earlier seed used (so at the same id), must get their own δ.
    strategy = create_strategy("probcover")
    features = BLOBS + 100.0
    ctx = SelectionContext(cycle=0, budgets=[3], labelled=np.zeros(15, bool), rng=np.random.default_rng(0),
                           pretext=Pretext(features=features), n_classes=3)
    first = strategy.select(ctx)[1]["delta"]
    features[:] = np.random.default_rng(1).normal(size=features.shape)  # same object, other content
    fresh = create_strategy("probcover").select(ctx)[1]["delta"]
    assert strategy.select(ctx)[1]["delta"] == fresh != first


def context(cycle, budgets, n=40, labelled=None, pretext=None, outputs=None, n_classes=2):
    return SelectionContext(cycle=cycle, budgets=budgets, labelled=np.zeros(n, bool) if labelled is None else labelled,
                            rng=np.random.default_rng(0), pretext=pretext or Pretext(order=np.arange(n)),
                            outputs=outputs, n_classes=n_classes)


def test_bal_order_descending_slides_from_the_other_end():
    order = np.arange(40)[::-1].copy()  # pool index 39 has the smallest CDD
    pretext = Pretext(order=order)
    up, info = create_strategy("bal", beta=1.0, first="uni").select(context(0, [4] * 4, pretext=pretext))
    down, info_down = create_strategy("bal", beta=1.0, first="uni", order="descending").select(
        context(0, [4] * 4, pretext=pretext))
    assert set(up.tolist()) <= {39, 38, 37, 36} and set(down.tolist()) <= {0, 1, 2, 3}
    assert info["window"] == info_down["window"] == [0, 4]
    assert "order" not in create_strategy("bal", beta=1.0).settings()  # the paper's settings as they were
    assert create_strategy("bal[order=descending]", beta=1.0).settings()["order"] == "descending"
    with pytest.raises(BalError, match="order"):
        create_strategy("bal", beta=1.0, order="sideways")


def test_addendum_rules():
    _, info = create_strategy("bal", beta=1.0).select(context(0, [4] * 4))
    assert info["addendum"] == 4 and info["window"] == [0, 4]  # the per-cycle size
    _, info = create_strategy("bal", beta=1.0, addendum="even").select(context(0, [4] * 4))
    assert info["addendum"] == 10 and info["window"] == [0, 10]  # 40 images over 4 cycles
    _, info = create_strategy("bal", beta=2.0, addendum=5).select(context(0, [4] * 4))
    assert info["window"] == [0, 10]
    with pytest.raises(BalError, match="addendum"):
        create_strategy("bal", beta=1.0, addendum="half")


def test_first_typical_inside_bal_reads_the_pretext_features():
    order = np.arange(15)
    bal = create_strategy("bal", beta=5.0, first="typical")
    assert bal.needs == {"order", "features"}
    picked, info = bal.select(context(0, [3, 3], n=15, pretext=Pretext(order=order, features=BLOBS)))
    assert sorted(picked.tolist()) == [0, 5, 10] and info["rule"] == "typical"


def test_order_from_the_model_features():
    # pretext order: 0..39; the model's features put 30..39 on the boundary between two clusters
    features = np.zeros((40, 1))
    features[:15, 0] = np.linspace(-10.0, -9.0, 15)
    features[15:30, 0] = np.linspace(9.0, 10.0, 15)
    features[30:, 0] = np.linspace(-0.5, 0.5, 10)
    logits = np.zeros((40, 2))
    outputs = lambda idx: (logits[idx], features[idx])  # noqa: E731
    labelled = np.zeros(40, bool)
    labelled[:4] = True
    paper = create_strategy("bal", beta=1.0)
    _, info = paper.select(context(1, [4, 4, 4], labelled=labelled, outputs=outputs))
    assert info["window"] == [4, 8]
    model = create_strategy("bal", beta=1.0, order_from="model")
    picked, _ = model.select(context(1, [4, 4, 4], labelled=labelled, outputs=outputs))
    assert set(picked.tolist()) <= set(range(30, 40))  # the window of the new order holds the boundary points
    with pytest.raises(BalError, match="order_from"):
        create_strategy("bal", beta=1.0, order_from="labels")


def test_dropout_disagreement_by_hand():
    from bal.selection.dropquery import dropout_disagreement

    # class 0 wins only through feature 0: a copy that drops it flips to class 1, one that keeps it does not
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    w = np.array([[1.0, 0.0], [0.0, 0.0]])
    b = np.array([0.0, 0.5])
    p, m = 0.5, 8
    got = dropout_disagreement(x, w, b, np.random.default_rng(3), p=p, m=m)
    draws = np.random.default_rng(3).random((m, 2, 2)) >= p  # the same stream: keep masks per copy
    assert got[0] == np.mean(~draws[:, 0, 0]) and got[1] == 0.0  # row 1 is class 1 with or without dropout
    assert dropout_disagreement(x, w, b, 0, p=0.0).tolist() == [0.0, 0.0]


def test_dropquery_picks_one_candidate_per_cluster_and_tops_up():
    from bal.selection.dropquery import dropquery_select

    # candidates: two tight pairs far apart (rows 0-1 and 2-3); rows 4-5 are not candidates
    x = np.array([[0.0, 0.0], [0.0, 0.1], [10.0, 0.0], [10.0, 0.1], [5.0, 5.0], [5.0, 5.1]])
    disagreement = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.5])  # 0.5 is not more than half
    picked = dropquery_select(x, np.zeros(6, bool), 2, 0, disagreement=disagreement)
    assert sorted(int(i) // 2 for i in picked) == [0, 1]  # one of each candidate pair, never row 4 or 5
    labelled = np.array([True, True, True, False, False, False])
    picked = dropquery_select(x, labelled, 2, 0, disagreement=disagreement)
    assert picked[0] == 3 and picked[1] in (4, 5)  # the one candidate left, then a top-up from the rest
    cold = dropquery_select(x, np.zeros(6, bool), 3, 0)  # no model: nearest the centres of all rows
    assert sorted(int(i) // 2 for i in cold) == [0, 1, 2]


def test_dropquery_strategy_reads_the_models_last_layer():
    features = np.concatenate([BLOBS, BLOBS + 0.01])
    w, b = np.eye(2, 2), np.zeros(2)

    def outputs(indices):
        return np.zeros((len(indices), 2)), features[indices, :2]

    strategy = create_strategy("dropquery")
    assert strategy.feature_norm == "l2"
    ctx = SelectionContext(cycle=1, budgets=[3, 3], labelled=np.zeros(30, bool), rng=np.random.default_rng(0),
                           pretext=Pretext(features=features), outputs=outputs, classifier=(w, b), n_classes=3)
    picked, info = strategy.select(ctx)
    assert len(set(picked.tolist())) == 3 and info["rule"] == "dropquery" and info["candidates"] >= 0
    with pytest.raises(BalError, match="last linear layer"):
        strategy.select(SelectionContext(cycle=1, budgets=[3, 3], labelled=np.zeros(30, bool),
                                         rng=np.random.default_rng(0), pretext=Pretext(features=features),
                                         outputs=outputs))


def test_schedule_switches_at_labels_per_class():
    features = BLOBS.astype(float)
    logits = np.tile([[2.0, 1.0, 0.0]], (15, 1))
    logits[7] = [1.0, 1.0, 1.0]  # the least confident, smallest margin

    def outputs(indices):
        return logits[indices], features[indices]

    strategy = create_strategy("schedule[early=typiclust,late=margin,switch=2]")
    assert strategy.needs == {"features"} and strategy.settings()["switch"] == 2.0

    def ctx(n_labelled):
        labelled = np.zeros(15, bool)
        labelled[[0, 5, 10, 1, 6, 11][:n_labelled]] = True
        return SelectionContext(cycle=1, budgets=[3, 1], labelled=labelled, rng=np.random.default_rng(0),
                                pretext=Pretext(features=features), outputs=outputs, n_classes=3)

    picked, info = strategy.select(ctx(3))  # one label a class: still early
    assert info["phase"] == "early" and info["rule"] == "typiclust"
    picked, info = strategy.select(ctx(6))  # two a class: margin takes over
    assert info["phase"] == "late" and picked.tolist() == [7]
    with pytest.raises(BalError, match="early"):
        create_strategy("schedule[early=schedule]")
