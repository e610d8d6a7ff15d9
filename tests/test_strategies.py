"""Strategy objects on fixed inputs: no network is trained here."""

from __future__ import annotations

import numpy as np
import pytest

from bal.errors import BalError
from bal.selection.strategies import (
    Pretext,
    SelectionContext,
    create_strategy,
    default_addendum,
    list_strategies,
    strategy_options,
)

N = 40


def context(cycle, budgets, labelled=None, pretext=None, logits=None, features=None, seed=0):
    labelled = np.zeros(N, bool) if labelled is None else labelled
    outputs = None
    if logits is not None:
        outputs = lambda idx: (logits[idx], features[idx] if features is not None else np.zeros((len(idx), 2)))  # noqa: E731
    return SelectionContext(cycle=cycle, budgets=budgets, labelled=labelled, rng=np.random.default_rng(seed),
                            pretext=pretext or Pretext(), outputs=outputs)


def confident_logits(uncertain_rows):
    logits = np.tile([8.0, 0.0, 0.0], (N, 1))
    logits[uncertain_rows] = [0.1, 0.0, 0.0]
    return logits


def test_default_addendum_is_the_per_cycle_size():
    assert default_addendum([5000] * 10) == 5000
    assert default_addendum([5000, 2500, 2500, 2500]) == 2500
    assert default_addendum([3, 4]) == 4  # a tie: the later one


def test_every_model_based_strategy_starts_from_the_same_random_set():
    firsts = {name: create_strategy(name).select(context(0, [5, 5]))[0]
              for name in ("random", "confidence", "margin", "entropy", "coreset", "badge")}
    reference = firsts["random"]
    assert len(reference) == 5
    assert all(np.array_equal(v, reference) for v in firsts.values())


def test_uncertainty_strategies_take_the_least_confident_unlabelled_images():
    labelled = np.zeros(N, bool)
    labelled[[3, 4]] = True
    logits = confident_logits([3, 7, 21, 30])  # row 3 is uncertain but already labelled
    picked, info = create_strategy("confidence").select(context(1, [2, 3], labelled, logits=logits))
    assert sorted(picked) == [7, 21, 30] and info["rule"] == "confidence"


def test_bal_selects_inside_its_sliding_window_along_the_cdd_order():
    order = np.arange(N)[::-1].copy()  # pool index 39 has the smallest CDD
    pretext = Pretext(order=order)
    bal = create_strategy("bal", beta=1.0)
    picked, info = bal.select(context(0, [4, 4, 4], pretext=pretext))
    assert info["window"] == [0, 4] and list(picked) == [39, 38, 37, 36]
    labelled = np.zeros(N, bool)
    labelled[picked] = True
    logits = confident_logits([35, 33, 10, 11])  # 10 and 11 lie outside the window [4, 8)
    picked, info = bal.select(context(1, [4, 4, 4], labelled, pretext=pretext, logits=logits))
    assert info["window"] == [4, 8] and set(picked) == {35, 33, 34, 32}
    assert list(picked[:2]) == [35, 33]  # most uncertain first


def test_bal_variants_differ_only_in_their_windows():
    pretext = Pretext(order=np.arange(N))
    labelled = np.zeros(N, bool)
    labelled[:4] = True
    logits = confident_logits([])
    released = create_strategy("bal-released", beta=1.0).select(context(1, [4] * 5, labelled, pretext, logits))[1]
    centred = create_strategy("bal", beta=1.0).select(context(1, [4] * 5, labelled, pretext, logits))[1]
    fix = create_strategy("bal-fix", beta=2.0, ignore_unknown=True)
    fixed = fix.select(context(1, [4] * 5, labelled, pretext, logits))[1]
    assert released["window"] == [8, 12] and centred["window"] == [4, 8] and fixed["window"] == [4, 8]


def test_pt4al_splits_the_loss_order_into_equal_batches_and_starts_evenly_spaced():
    losses = np.arange(N, dtype=float)  # pool index 39 has the largest rotation loss
    pt4al = create_strategy("pt4al")
    picked, info = pt4al.select(context(0, [2, 2, 2, 2], pretext=Pretext(losses=losses)))
    # 4 cycles over 40 images: batches of 10; uni over batch 0 (indices 39..30): positions 0 and 5
    assert info["window"] == [0, 10] and list(picked) == [39, 34] and info["rule"] == "uni"
    labelled = np.zeros(N, bool)
    labelled[picked] = True
    logits = confident_logits([25, 29, 5])  # 5 lies in another batch
    picked, info = pt4al.select(context(1, [2, 2, 2, 2], labelled, Pretext(losses=losses), logits))
    assert info["window"] == [10, 20] and set(picked) == {25, 29}


def test_typiclust_needs_pretext_features_and_works_in_cycle_0():
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 0.1, (10, 2)) for c in (0.0, 10.0, 20.0, 30.0)])
    picked, info = create_strategy("typiclust").select(context(0, [4, 4], pretext=Pretext(features=blobs)))
    assert sorted(i // 10 for i in picked) == [0, 1, 2, 3]  # one per blob
    assert create_strategy("typiclust").needs == {"features"}


def test_coreset_and_badge_use_the_model_outputs():
    features = np.zeros((N, 2))
    features[:, 0] = np.arange(N)
    labelled = np.zeros(N, bool)
    labelled[0] = True
    picked, _ = create_strategy("coreset").select(context(1, [1, 2], labelled, logits=confident_logits([]),
                                                        features=features))
    assert list(picked) == [39, 19]  # farthest from 0; then 19 and 20 tie at 19 from {0, 39}: the smaller
    picked, _ = create_strategy("badge").select(context(1, [1, 3], labelled, logits=confident_logits([5, 6, 7]),
                                                      features=features + 1))
    assert len(set(picked)) == 3 and not labelled[picked].any()


def test_unknown_strategy_lists_the_known_ones():
    with pytest.raises(BalError, match="bal-released"):
        create_strategy("greedy")
    assert len(list_strategies()) == 15 and {"probcover", "dropquery", "schedule"} <= set(list_strategies())


def test_bal_plus_keeps_its_own_beta_and_the_papers_takes_the_presets():
    import inspect

    import bal
    from bal.cli import build_parser
    from bal.project.labelling import QUERY_STRATEGY

    own = strategy_options("bal-plus")["beta"]
    assert create_strategy("bal-plus", default_beta=own + 0.7).beta == own
    assert create_strategy("bal", default_beta=1.7).beta == 1.7
    assert create_strategy("bal", default_beta=1.7, beta=3.0).beta == 3.0
    assert create_strategy("random", default_beta=1.7).name == "random"
    # one home for the recommendation: the default of bal query and the API; bal train keeps the paper's
    assert bal.RECOMMENDED in list_strategies()
    assert QUERY_STRATEGY == bal.RECOMMENDED
    # the API's default is bal.recommend's (None: the recommendation for this machine)
    assert inspect.signature(bal.active_learning).parameters["strategy"].default is None
    from bal.recommend import PRETRAINED, SCRATCH
    from bal.selection import check_spec

    assert SCRATCH.strategy == bal.RECOMMENDED and check_spec(PRETRAINED.strategy) == PRETRAINED.strategy
    assert build_parser().parse_args(["train"]).strategy == "bal"
    assert build_parser().parse_args(["run"]).strategy == "bal"
