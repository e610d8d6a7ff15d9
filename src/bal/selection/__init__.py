"""Which images to label: CDD ordering, sliding sub-pools, per-cycle rules and the strategies built on them.

Pipeline (docs/method.md steps 2-3)::

    order = sort_by_cdd(cluster_distance_difference(features, n_clusters))
    window = subpool_window(cycle, n_cycles, N, addendum, beta, mode)
    sub = build_subpool(order, window, labelled, k)
    picked = sub.candidates[select_first(len(sub.candidates), k, rule, rng)]      # cycle 0
    picked = sub.candidates[select_uncertain(logits_of(sub.candidates), k, rule)] # cycle > 0

Every rule is a pure NumPy function with documented tie-breaking; :mod:`.strategies`
wraps them into named strategies (``create_strategy("bal", beta=1.2)``).
"""

from bal.selection.baselines import (
    badge_select,
    gradient_embedding,
    kcenter_greedy,
    kmeanspp_seeding,
    typiclust_select,
)
from bal.selection.cdd import (
    KMEANS_ALGORITHMS,
    cdd_from_distances,
    cluster_distance_difference,
    kmeans_distances,
    sort_by_cdd,
)
from bal.selection.first import FIRST_RULES, select_first
from bal.selection.specs import EMBEDDING_OPTIONS, parse_strategy, split_strategy_list

# strategies import the rules above, so they come last
from bal.selection.strategies import (  # noqa: E402
    RECOMMENDED,
    Pretext,
    SelectionContext,
    Strategy,
    check_spec,
    create_strategy,
    list_strategies,
    register_strategy,
    strategy_options,
)
from bal.selection.subpool import WINDOW_MODES, SubPool, build_subpool, subpool_window
from bal.selection.uncertainty import SAMPLING_RULES, select_uncertain, uncertainty_scores

__all__ = [
    "EMBEDDING_OPTIONS",
    "FIRST_RULES",
    "KMEANS_ALGORITHMS",
    "RECOMMENDED",
    "SAMPLING_RULES",
    "WINDOW_MODES",
    "Pretext",
    "SelectionContext",
    "Strategy",
    "SubPool",
    "badge_select",
    "build_subpool",
    "check_spec",
    "parse_strategy",
    "split_strategy_list",
    "cdd_from_distances",
    "cluster_distance_difference",
    "create_strategy",
    "gradient_embedding",
    "kcenter_greedy",
    "kmeans_distances",
    "kmeanspp_seeding",
    "list_strategies",
    "register_strategy",
    "select_first",
    "select_uncertain",
    "sort_by_cdd",
    "strategy_options",
    "subpool_window",
    "typiclust_select",
    "uncertainty_scores",
]
