"""Selection rules of well-known active-learning baselines, as pure NumPy functions.

* Core-set (Sener & Savarese, ICLR 2018): :func:`kcenter_greedy`, farthest-first
  traversal of the task model's penultimate features.
* BADGE (Ash et al., ICLR 2020): :func:`gradient_embedding` then
  :func:`kmeanspp_seeding`, together :func:`badge_select`.
* TypiClust (Hacohen, Dekel & Weinshall, ICML 2022, TPC-RP): :func:`typiclust_select`,
  the most typical point of the least-covered k-means cluster of self-supervised features.
* ProbCover (Yehuda, Dekel, Hacohen & Weinshall, NeurIPS 2022): :func:`probcover_delta`
  then :func:`probcover_select`, greedy max coverage of δ-balls.

Cost in time and memory, N pool images of D features, k picks, L labelled:

=========== =============================================== ==================================
rule        time                                            memory
=========== =============================================== ==================================
k-center    O(k N D) + O(L N D) (blocked products)          O(N) distances, blocks of 32 MiB
BADGE       O(k M C D) over M candidates                    O(M C D) float32 embeddings
TypiClust   k-means O(N K D) + k-NN inside each cluster     O(N); a cluster's block of 32 MiB
ProbCover   O(N^2 D) in blocks, once per run                O(N + edges), edges = N x mean degree
=========== =============================================== ==================================

None of them holds an N x N matrix.

No training happens here: the caller runs the models and passes arrays in. Every
function returns pool (or row) indices in the order they were picked. The rules live by
family: :mod:`.diversity` (Core-set, BADGE), :mod:`.coverage` (TypiClust, ProbCover),
:mod:`.geometry` (what they share); this module names them together.
"""

from bal.selection.coverage import probcover_delta, probcover_select, typiclust_select
from bal.selection.diversity import badge_select, gradient_embedding, kcenter_greedy, kmeanspp_seeding
from bal.selection.geometry import kmeans_labels, typicality

__all__ = [
    "badge_select",
    "gradient_embedding",
    "kcenter_greedy",
    "kmeanspp_seeding",
    "kmeans_labels",
    "probcover_delta",
    "probcover_select",
    "typicality",
    "typiclust_select",
]
