"""De-duplication of opinion vectors: k-means representatives and greedy near-duplicate removal."""

import numpy as np
import pytest

from agents.dedup import cluster_representatives, near_duplicates


def _around(direction: list[float], spread: float) -> list[list[float]]:
    """Three points: one off to each side of `direction` (in its plane with the next axis), then it.

    Symmetric around `direction`, so the cluster's centroid lies on it and the last point, the
    direction itself, is the member nearest the centroid although it comes last."""
    base = np.array(direction, dtype=float)
    side = np.roll(base, 1)
    return [list(base + spread * side), list(base - spread * side), list(base)]


def _three_groups() -> np.ndarray:
    return np.array(
        _around([1, 0, 0, 0], 0.1) + _around([0, 1, 0, 0], 0.1) + _around([0, 0, 1, 0], 0.1),
        dtype=float,
    )


def test_each_cluster_is_represented_by_the_member_nearest_its_centroid():
    assert cluster_representatives(_three_groups(), 3) == [(2, 0), (5, 1), (8, 2)]


def test_clusters_are_numbered_in_the_order_of_their_representatives():
    vectors = _three_groups()
    reordered = np.concatenate([vectors[6:], vectors[:3], vectors[3:6]])  # third group first

    assert cluster_representatives(reordered, 3) == [(2, 0), (5, 1), (8, 2)]


def test_clustering_is_deterministic_across_calls_and_input_copies():
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(60, 8))

    first = cluster_representatives(vectors, 5)

    assert cluster_representatives(vectors, 5) == first
    assert cluster_representatives(vectors.copy(), 5) == first
    assert cluster_representatives(vectors.astype(np.float32).astype(np.float64), 5) == first
    assert len(first) == 5
    assert [cluster for _, cluster in first] == [0, 1, 2, 3, 4]
    assert [index for index, _ in first] == sorted(index for index, _ in first)


def test_vector_length_does_not_matter_only_direction():
    vectors = _three_groups()
    scaled = vectors * np.arange(1, 10)[:, None]

    assert cluster_representatives(scaled, 3) == cluster_representatives(vectors, 3)


def test_k_larger_than_the_number_of_vectors_returns_every_vector():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])

    assert cluster_representatives(vectors, 10) == [(0, 0), (1, 1), (2, 2)]


def test_identical_vectors_collapse_to_their_first_occurrence():
    vectors = np.array([[0.0, 2.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 1.0]])

    # Only two distinct directions, so k=3 becomes 2 and each direction keeps its first index.
    assert cluster_representatives(vectors, 3) == [(0, 0), (1, 1)]


def test_identical_vectors_count_once_when_lowering_k():
    vectors = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5 + [[1.0, 1.0]])

    # The lone diagonal joins one of the two heavy clusters, whose first member stays nearest.
    assert cluster_representatives(vectors, 2) == [(0, 0), (5, 1)]
    assert cluster_representatives(vectors, 3) == [(0, 0), (5, 1), (10, 2)]


def test_empty_input_has_no_representatives():
    assert cluster_representatives(np.empty((0, 4)), 3) == []
    assert cluster_representatives(np.array([]), 3) == []


def test_k_below_one_is_refused():
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        cluster_representatives(np.eye(3), 0)


def test_a_near_copy_of_an_earlier_vector_is_dropped_and_the_first_is_kept():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.01], [0.0, 5.0]])

    assert near_duplicates(vectors, 0.99) == [2, 3]


def test_the_threshold_itself_counts_as_a_duplicate():
    # [3, 4] / 5 = [0.6, 0.8] exactly, so its cosine with [1, 0] is exactly 0.6.
    vectors = np.array([[5.0, 0.0], [3.0, 4.0]])

    assert near_duplicates(vectors, 0.6) == [1]
    assert near_duplicates(vectors, 0.600001) == []


def test_identical_vectors_are_duplicates_even_at_threshold_one():
    vectors = np.array([[0.1, 0.7, 0.3], [0.1, 0.7, 0.3], [0.2, 1.4, 0.6]])

    assert near_duplicates(vectors, 1.0) == [1, 2]


def test_a_dropped_vector_does_not_cause_further_drops():
    # b is within the threshold of a, c is within it of b but not of a: only b goes.
    angle = np.radians([0.0, 20.0, 40.0])
    vectors = np.stack([np.cos(angle), np.sin(angle)], axis=1)

    assert near_duplicates(vectors, np.cos(np.radians(25.0))) == [1]


def test_near_duplicates_of_an_empty_input_are_none():
    assert near_duplicates(np.empty((0, 4)), 0.9) == []


def test_near_duplicates_across_blocks_match_the_pairwise_definition():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(300, 16))
    # Each base vector reappears later, slightly perturbed, across the 512-row block boundary.
    vectors = np.concatenate([base, rng.normal(size=(400, 16)), base + 0.01 * rng.normal(size=base.shape)])

    dropped = near_duplicates(vectors, 0.99)

    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    kept: list[int] = []
    expected = []
    for index, row in enumerate(unit):
        if kept and np.max(unit[kept] @ row) >= 0.99:
            expected.append(index)
        else:
            kept.append(index)
    assert dropped == expected
    assert set(range(700, 1000)) <= set(dropped)
