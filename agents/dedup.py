"""De-duplication of CulturePark opinions by their embedding vectors.

CulturePark's dialogues repeat themselves: the same opinion comes back in other words from turn to
turn and from one dialogue to the next. Two tools thin them out, both over cosine geometry (rows are
L2-normalised first, so a vector's length never matters):

- `near_duplicates` drops an opinion that is nearly the same as one already kept (a threshold on
  cosine similarity, first come first kept);
- `cluster_representatives` keeps one opinion per k-means cluster, the one nearest its centroid, as
  the paper does to choose a fixed number of diverse opinions.

scikit-learn is imported inside `cluster_representatives` only: it costs a large import, and the
augment path never needs it (this module is imported by the CulturePark path alone).
"""

from __future__ import annotations

import numpy as np

# Cosine similarities computed in float64 can fall an ulp or two short of the exact value (an
# identical vector's similarity to itself may come out as 0.9999999999999998), so comparisons allow
# this much slack; a real difference between two opinions is orders of magnitude larger.
_SIMILARITY_SLACK = 1e-9

# Rows of the similarity matrix computed at once in `near_duplicates`: 512 rows against 10k vectors
# in float64 is 40 MB, where the whole matrix would be 800 MB.
_BLOCK_ROWS = 512

# k-means restarts: fixed, like the seed, so the same vectors always give the same clusters.
_KMEANS_RESTARTS = 10


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    """The vectors as a float64 matrix with one row per vector; an empty input becomes 0 rows."""
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.size == 0:
        return matrix.reshape(0, matrix.shape[-1] if matrix.ndim == 2 else 0)
    if matrix.ndim != 2:
        raise ValueError(f"vectors must be a 2-D array (one row per vector), got shape {matrix.shape}")
    return matrix


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; an all-zero row stays zero (its cosine with anything counts as 0)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def cluster_representatives(vectors: np.ndarray, k: int, *, random_state: int = 0) -> list[tuple[int, int]]:
    """One representative per k-means cluster of the L2-normalised vectors.

    Returns (index of the member nearest its cluster's centroid, cluster number) pairs sorted by
    index; clusters are numbered 0.. in the order of their representatives' indices, so the output
    does not depend on how k-means happened to label them. Identical (after normalisation) vectors
    are one point: k is lowered to the number of distinct points, and when there are no more than k
    of those each is its own cluster, represented by its first occurrence. The same vectors and
    random_state always give the same answer.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    points = _unit_rows(_as_matrix(vectors))
    if len(points) == 0:
        return []
    distinct, first_index = np.unique(points, axis=0, return_index=True)
    if len(distinct) <= k:
        return [(int(index), cluster) for cluster, index in enumerate(sorted(first_index))]

    from sklearn.cluster import KMeans

    # Fit on every vector, not only the distinct ones: an opinion voiced many times weighs more.
    kmeans = KMeans(n_clusters=k, n_init=_KMEANS_RESTARTS, random_state=random_state).fit(points)
    distances = np.linalg.norm(points - kmeans.cluster_centers_[kmeans.labels_], axis=1)
    representatives = []
    for label in range(k):
        members = np.flatnonzero(kmeans.labels_ == label)
        if len(members):  # k-means relocates empty clusters, but an empty one must not crash us
            # argmin takes the first of equal distances, so the earliest member wins a tie.
            representatives.append(int(members[np.argmin(distances[members])]))
    return [(index, cluster) for cluster, index in enumerate(sorted(representatives))]


def near_duplicates(vectors: np.ndarray, threshold: float) -> list[int]:
    """Indices to drop, ascending: each has cosine similarity >= threshold to an earlier KEPT vector.

    Greedy and order-preserving: the first of a group of near-copies is kept, and a dropped vector
    never causes another drop (so a chain a~b~c with a and c far apart keeps a and c). All-zero
    vectors have similarity 0 to everything. Works block by block, so ~10k vectors need ~40 MB.
    """
    points = _unit_rows(_as_matrix(vectors))
    kept = np.zeros(len(points), dtype=bool)
    dropped: list[int] = []
    for start in range(0, len(points), _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, len(points))
        # Similarities of this block's rows to every row up to the block's end; whether row i is
        # kept depends on the rows before it in the same block, hence the loop over its rows.
        similarity = points[start:stop] @ points[:stop].T
        for offset, row in enumerate(similarity):
            index = start + offset
            if np.any(row[:index][kept[:index]] >= threshold - _SIMILARITY_SLACK):
                dropped.append(index)
            else:
                kept[index] = True
    return dropped
